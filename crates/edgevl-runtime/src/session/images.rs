//! Attaching images to a conversation and laying them out in the prompt (spec 2b, 2c): each image
//! is bound to the next user message, at its `<__media__>` markers or, without any, in front of
//! its text; in the prompt an image is its views' embeddings as its family lays them out
//! (this project's: global view first, nothing around them; InternVL and SmolVLM: wrapped in
//! their image tokens, see `layout`).

use super::layout::{wrapped_segments, ImageRows};
use super::Session;
use crate::image::{ImageEncoderHandle, ImageInfo, PendingImage, PreparedImage, MEDIA_MARKER};
use crate::segment::{EmbeddingBlock, Segment};
use crate::RuntimeError;
use edgevl_arch::family::PromptLayout;
use edgevl_tokenizer::{ChatMessage, ContentForm};
use edgevl_vision::RgbImage;
use std::path::Path;
use std::time::Instant;

impl Session {
    /// Attach the image at `path` to the next user message and, unless encoding ahead is off,
    /// start encoding it in the background at once (nothing is encoded when its embeddings are
    /// cached). The file is read, decoded and planned here, so a bad image fails now.
    pub fn add_image(&mut self, path: impl AsRef<Path>) -> Result<ImageInfo, RuntimeError> {
        let vision = self.vision.as_ref().ok_or(RuntimeError::NoVision)?;
        let prepared = vision.encoder().prepare(path.as_ref())?;
        self.attach(prepared)
    }

    /// [`Session::add_image`] for pixels already in memory; `label` names the image in errors.
    pub fn add_image_decoded(&mut self, label: &str, image: RgbImage) -> Result<ImageInfo, RuntimeError> {
        let vision = self.vision.as_ref().ok_or(RuntimeError::NoVision)?;
        let prepared = vision.encoder().prepare_decoded(label.to_string(), image)?;
        self.attach(prepared)
    }

    /// Submits `prepared` for encoding, unless its tokens with those of the images already
    /// waiting pass the whole context: such an image could never be asked about, and stayed
    /// attached, failing every later turn, until a reset.
    fn attach(&mut self, prepared: PreparedImage) -> Result<ImageInfo, RuntimeError> {
        let vision = self.vision.as_ref().ok_or(RuntimeError::NoVision)?;
        let waiting: usize = self.pending_images.iter().map(|p| p.info().n_tokens).sum();
        let at_least =
            waiting.saturating_add(usize::try_from(prepared.plan.image_tokens()).unwrap_or(usize::MAX));
        if at_least > self.kv.n_ctx() {
            return Err(RuntimeError::PromptTooLong {
                at_least,
                n_ctx: self.kv.n_ctx(),
                n_ctx_train: self.decoder.hparams().n_ctx_train,
            });
        }
        let ahead = vision.encoder().config().encode_ahead;
        let pending = vision.submit(prepared, ahead)?;
        let info = pending.info().clone();
        self.pending_images.push(pending);
        Ok(info)
    }

    /// True when an mmproj is loaded.
    pub fn has_vision(&self) -> bool {
        self.vision.is_some()
    }

    /// A handle on the image encoder for other threads (`None` without an mmproj).
    pub fn image_encoder(&self) -> Option<ImageEncoderHandle> {
        self.vision.clone().map(ImageEncoderHandle::new)
    }

    /// Replace the whole conversation with `messages` and `images` (as an API request carries
    /// it): the images, in order, go at the `<__media__>` markers of the messages, which must
    /// number exactly as many. Images attached with [`Session::add_image`] stay attached. The
    /// KV cache is kept, so the next reply prefills only what differs from what it holds.
    pub fn set_conversation(
        &mut self,
        messages: Vec<ChatMessage>,
        images: Vec<PendingImage>,
    ) -> Result<(), RuntimeError> {
        if self.vision.is_none() && !images.is_empty() {
            return Err(RuntimeError::NoVision);
        }
        if self.vision.is_some() {
            let markers: usize = messages.iter().map(|m| m.content.matches(MEDIA_MARKER).count()).sum();
            if markers != images.len() {
                return Err(RuntimeError::BadInput(format!(
                    "the messages have {markers} {MEDIA_MARKER} marker(s) but {} image(s)",
                    images.len()
                )));
            }
        }
        self.messages = messages;
        self.images = images;
        Ok(())
    }

    /// `user_text` with the attached images' markers: as given when it has one marker per
    /// attached image, else (no marker at all) the markers in front. Moves the attached images
    /// into the conversation; returns how many.
    pub(super) fn bind_images(&mut self, user_text: &str) -> Result<(String, usize), RuntimeError> {
        if self.vision.is_none() {
            return Ok((user_text.to_string(), 0));
        }
        let markers = user_text.matches(MEDIA_MARKER).count();
        let n = self.pending_images.len();
        let text = if markers == n {
            user_text.to_string()
        } else if markers == 0 {
            format!("{}{user_text}", MEDIA_MARKER.repeat(n))
        } else {
            return Err(RuntimeError::BadInput(format!(
                "the message has {markers} {MEDIA_MARKER} marker(s) but {n} image(s) are attached"
            )));
        };
        self.images.append(&mut self.pending_images);
        Ok((text, n))
    }

    /// Puts the last `n` bound images back to attached (a failed turn is taken back).
    pub(super) fn unbind_images(&mut self, n: usize) {
        let at = self.images.len().saturating_sub(n);
        let mut bound = self.images.split_off(at);
        bound.append(&mut self.pending_images);
        self.pending_images = bound;
    }

    /// The conversation rendered with the chat template as prompt segments: text tokens, and
    /// each image's embeddings where its marker is, laid out as the mmproj's family wants
    /// (waiting for encodings still running). Also returns the milliseconds spent waiting for
    /// images.
    pub fn conversation_segments(&self) -> Result<(Vec<Segment>, f64), RuntimeError> {
        let layout = self.prompt_layout();
        let rendered = match layout.part_text() {
            // A vision template renders the images as content parts.
            Some(_) if self.image_parts => self.template.render_content(
                &self.messages,
                true,
                ContentForm::Parts { image_marker: MEDIA_MARKER },
            )?,
            // A text template gets the family's image text in place of each marker.
            Some(part) => {
                let messages: Vec<ChatMessage> = self
                    .messages
                    .iter()
                    .map(|m| ChatMessage::new(m.role.clone(), m.content.replace(MEDIA_MARKER, part)))
                    .collect();
                self.render_text(&messages)?
            }
            None => self.render_text(&self.messages)?,
        };
        self.segments_of(&rendered, self.wants_bos(&rendered), &self.images)
    }

    /// Segments of a prompt used as is (no chat template, BOS as the tokenizer wants), with the
    /// attached images at its markers or, without any, in front; the images are used up.
    /// Also returns the milliseconds spent waiting for images.
    pub fn raw_prompt_segments(&mut self, prompt: &str) -> Result<(Vec<Segment>, f64), RuntimeError> {
        let (text, n) = self.bind_images(prompt)?;
        let images = self.images.split_off(self.images.len() - n);
        let text = match self.prompt_layout().part_text() {
            Some(part) => text.replace(MEDIA_MARKER, part),
            None => text,
        };
        self.segments_of(&text, true, &images)
    }

    /// The prompt layout of the loaded mmproj's family (embeddings only without one).
    fn prompt_layout(&self) -> PromptLayout {
        self.vision.as_ref().map_or(PromptLayout::EmbeddingsOnly, |v| v.encoder().family().prompt())
    }

    /// Splits `text` at the images' places into token segments (BOS in front when `bos`) and
    /// the embeddings of `images`, in order: at each `<__media__>` marker for this project's
    /// layout, at each placeholder, expanded, for the wrapped layouts.
    fn segments_of(
        &self,
        text: &str,
        bos: bool,
        images: &[PendingImage],
    ) -> Result<(Vec<Segment>, f64), RuntimeError> {
        // A prompt that cannot fit is refused before its images are waited for and its text is
        // tokenised (a 30 MiB message took the tokenizer half a minute and gigabytes).
        let at_least = text.len() / self.tokenizer.max_bytes_per_token()
            + images.iter().map(|im| im.info().n_tokens).sum::<usize>();
        let n_ctx = self.kv.n_ctx();
        if at_least > n_ctx {
            let n_ctx_train = self.decoder.hparams().n_ctx_train;
            return Err(RuntimeError::PromptTooLong { at_least, n_ctx, n_ctx_train });
        }
        let Some(vision) = &self.vision else {
            return Ok((vec![Segment::Tokens(self.tokenizer.encode(text, bos, true))], 0.0));
        };
        let t0 = Instant::now();
        let rows = images
            .iter()
            .map(|im| {
                vision.wait(im, &mut |p| {
                    if let Some(f) = &self.progress {
                        f(p);
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let waited = t0.elapsed().as_secs_f64() * 1e3;
        let layout = vision.encoder().family().prompt();
        if layout.placeholder().is_some() {
            let images: Vec<ImageRows<'_>> = images
                .iter()
                .zip(rows)
                .map(|(im, rows)| ImageRows { key: im.info().key, rows, plan: &im.info().plan })
                .collect();
            let d = self.decoder.hparams().n_embd;
            let tpv = vision.encoder().tokens_per_view();
            let segments = wrapped_segments(&self.tokenizer, layout, text, bos, &images, tpv, d)?;
            return Ok((segments, waited));
        }
        let parts: Vec<&str> = text.split(MEDIA_MARKER).collect();
        if parts.len() - 1 != images.len() {
            return Err(RuntimeError::BadInput(format!(
                "the prompt has {} {MEDIA_MARKER} marker(s) but {} image(s)",
                parts.len() - 1,
                images.len()
            )));
        }
        let mut segments = Vec::with_capacity(2 * parts.len());
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                let key = images[i - 1].info().key;
                segments.push(Segment::Embeddings(EmbeddingBlock::whole(key, rows[i - 1].clone())));
            }
            let tokens = self.tokenizer.encode(part, i == 0 && bos, true);
            if !tokens.is_empty() {
                segments.push(Segment::Tokens(tokens));
            }
        }
        Ok((segments, waited))
    }
}
