//! Named intermediate activations (llama.cpp's `cb(cur, "attn_norm", il)`), so a layer can be
//! compared with transformers or llama.cpp when numbers drift. Off by default; when off each call
//! site costs one branch.

use std::sync::{Arc, Mutex};

/// Every activation name the forward passes emit: the decoder's (`inp_embd` to `result_output`)
/// and the vision tower's (`patch_embd` to `projected`; `attn_out`, `ffn_out` and `layer_out`
/// are both's).
pub const ACTIVATION_NAMES: [&str; 12] = [
    "inp_embd",
    "attn_norm",
    "attn_out",
    "ffn_norm",
    "ffn_out",
    "layer_out",
    "result_norm",
    "result_output",
    "patch_embd",
    "vit_out",
    "merged",
    "projected",
];

/// Receives activations as the forward passes compute them.
pub trait ActivationHook: Send + Sync {
    /// `data` is the activation `name` of block `layer` (`None` outside the blocks), row-major:
    /// one row per position (or per tile token) of the current pass.
    fn activation(&self, name: &str, layer: Option<usize>, data: &[f32]);
}

/// An optional [`ActivationHook`].
#[derive(Clone, Default)]
pub struct Hook(Option<Arc<dyn ActivationHook>>);

impl Hook {
    /// A hook that calls `h`.
    pub fn new(h: Arc<dyn ActivationHook>) -> Self {
        Hook(Some(h))
    }

    /// Whether a hook is set.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Passes the activation on when a hook is set.
    #[inline]
    pub fn emit(&self, name: &str, layer: Option<usize>, data: &[f32]) {
        debug_assert!(ACTIVATION_NAMES.contains(&name), "{name} is not in ACTIVATION_NAMES");
        if let Some(h) = &self.0 {
            h.activation(name, layer, data);
        }
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_on() { "Hook(on)" } else { "Hook(off)" })
    }
}

/// One recorded activation.
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    /// Its name (`layer_out`, `attn_norm`, ...).
    pub name: String,
    /// Its block, if it belongs to one.
    pub layer: Option<usize>,
    /// The values, row-major.
    pub data: Vec<f32>,
}

/// An [`ActivationHook`] that keeps copies of the activations whose names it was given (all of
/// them when the list is empty), in the order they were computed.
#[derive(Debug, Default)]
pub struct ActivationRecorder {
    names: Vec<String>,
    seen: Mutex<Vec<Activation>>,
}

impl ActivationRecorder {
    /// Records the activations called one of `names` (every one when `names` is empty).
    pub fn new(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ActivationRecorder { names: names.into_iter().map(Into::into).collect(), seen: Mutex::default() }
    }

    /// Takes what was recorded so far.
    pub fn take(&self) -> Vec<Activation> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ActivationHook for ActivationRecorder {
    fn activation(&self, name: &str, layer: Option<usize>, data: &[f32]) {
        if self.names.is_empty() || self.names.iter().any(|n| n == name) {
            let a = Activation { name: name.to_string(), layer, data: data.to_vec() };
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).push(a);
        }
    }
}
