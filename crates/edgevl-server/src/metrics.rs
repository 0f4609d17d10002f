//! Counters for `GET /metrics`, in Prometheus' text format.

use edgevl_runtime::ImageEncoderHandle;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// What the server counts; shared by the HTTP side and the engine thread.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Requests admitted and waiting for a slot.
    pub queue_depth: AtomicUsize,
    /// Slots prefilling or generating.
    pub slots_busy: AtomicUsize,
    /// Requests whose images are being decoded and encoded (before they queue for a slot).
    pub preparing_images: AtomicUsize,
    /// Prompt positions of finished requests.
    pub prompt_tokens: AtomicU64,
    /// Prompt positions found in a slot's KV cache.
    pub cached_tokens: AtomicU64,
    /// Prompt positions holding image embeddings.
    pub image_tokens: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// Microseconds spent decoding (after each first token).
    pub decode_us: AtomicU64,
    /// Tokens decoded in `decode_us`.
    pub decoded_tokens: AtomicU64,
    /// Requests stopped because their client went away.
    pub cancelled: AtomicU64,
}

/// One more on a gauge while it lives.
pub struct GaugeHold<'a>(&'a AtomicUsize);

impl<'a> GaugeHold<'a> {
    /// Adds one to `gauge` until the hold is dropped.
    pub fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        GaugeHold(gauge)
    }
}

impl Drop for GaugeHold<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Adds `v` to a counter.
pub fn add(c: &AtomicU64, v: u64) {
    c.fetch_add(v, Ordering::Relaxed);
}

impl Metrics {
    /// Counts one answered request on `path` (a known route, else `other`) with `status`.
    pub fn count_request(&self, path: &'static str, status: u16) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((path, status)).or_insert(0) += 1;
    }

    /// The text exposition; `vision` adds the image encoder's counters, `slots` the slot count.
    pub fn render(&self, vision: Option<&ImageEncoderHandle>, slots: usize) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric(
            "edgevl_queue_depth",
            "gauge",
            "Requests admitted and waiting for a slot.",
            self.queue_depth.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "edgevl_slots_busy",
            "gauge",
            "Slots prefilling or generating a reply.",
            self.slots_busy.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "edgevl_requests_preparing_images",
            "gauge",
            "Requests whose images are being decoded and encoded, before they queue for a slot.",
            self.preparing_images.load(Ordering::Relaxed).to_string(),
        );
        metric("edgevl_slots", "gauge", "Slots (--parallel).", slots.to_string());
        metric(
            "edgevl_prompt_tokens_total",
            "counter",
            "Prompt positions of finished requests.",
            load(&self.prompt_tokens),
        );
        metric(
            "edgevl_prompt_tokens_cached_total",
            "counter",
            "Prompt positions reused from a slot's KV cache.",
            load(&self.cached_tokens),
        );
        metric(
            "edgevl_image_tokens_total",
            "counter",
            "Prompt positions holding image embeddings.",
            load(&self.image_tokens),
        );
        metric("edgevl_generated_tokens_total", "counter", "Tokens generated.", load(&self.generated_tokens));
        let us = self.decode_us.load(Ordering::Relaxed);
        let tok_s =
            if us > 0 { self.decoded_tokens.load(Ordering::Relaxed) as f64 / (us as f64 / 1e6) } else { 0.0 };
        metric(
            "edgevl_decode_tokens_per_second",
            "gauge",
            "Decode speed over all requests (tokens after the first over their time).",
            format!("{tok_s:.2}"),
        );
        metric(
            "edgevl_requests_cancelled_total",
            "counter",
            "Requests stopped because the client went away.",
            load(&self.cancelled),
        );
        if let Some(v) = vision {
            let (entries, bytes) = v.cache_usage();
            metric(
                "edgevl_vit_tiles_encoded_total",
                "counter",
                "Views (tiles and global views) run through the ViT.",
                v.tiles_encoded().to_string(),
            );
            metric(
                "edgevl_image_cache_hits_total",
                "counter",
                "Images whose embeddings were cached or being computed.",
                v.cache_hits().to_string(),
            );
            metric(
                "edgevl_image_cache_entries",
                "gauge",
                "Images in the embedding cache.",
                entries.to_string(),
            );
            metric("edgevl_image_cache_bytes", "gauge", "Bytes in the embedding cache.", bytes.to_string());
        }
        if let Some(rss) = resident_bytes() {
            metric(
                "edgevl_resident_memory_bytes",
                "gauge",
                "Resident memory of the process.",
                rss.to_string(),
            );
        }
        if let Some(heap) = edgevl_kernels::heap::in_use_bytes() {
            metric(
                "edgevl_heap_in_use_bytes",
                "gauge",
                "Bytes the C allocator has handed out and not taken back (glibc only).",
                heap.to_string(),
            );
        }
        let _ = writeln!(out, "# HELP edgevl_requests_total Answered requests by path and status.\n# TYPE edgevl_requests_total counter");
        for ((path, code), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "edgevl_requests_total{{path=\"{path}\",code=\"{code}\"}} {n}");
        }
        out
    }
}

/// Resident memory now, from /proc/self/status (Linux only).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
