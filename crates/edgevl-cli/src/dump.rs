//! `--dump-activations DIR [--dump NAMES]`: named intermediate activations of the forward passes
//! (edgevl_model's activation hook) written as float32 `.npy` files, to compare a layer with
//! transformers or llama.cpp when numbers drift.

use anyhow::Context;
use clap::Args;
use edgevl_model::{ActivationRecorder, Hook};
use std::path::PathBuf;
use std::sync::Arc;

/// Activation dump options.
#[derive(Args, Debug, Clone, Default)]
pub struct DumpArgs {
    /// Write the activations the forward passes compute into this folder, one
    /// `NNNNN-name[-layer].npy` (flat float32, in computation order) each.
    #[arg(long, value_name = "DIR")]
    pub dump_activations: Option<PathBuf>,
    /// Which activations (comma-separated names, e.g. `layer_out,attn_norm`; default all). The
    /// decoder names `inp_embd attn_norm attn_out ffn_norm ffn_out layer_out result_norm
    /// result_output`, the vision tower `patch_embd attn_out ffn_out layer_out vit_out merged
    /// projected`.
    #[arg(long, value_delimiter = ',', value_name = "NAMES", requires = "dump_activations",
          value_parser = clap::builder::PossibleValuesParser::new(edgevl_model::ACTIVATION_NAMES), hide_possible_values = true)]
    pub dump: Vec<String>,
}

impl DumpArgs {
    /// A recorder and the hook that feeds it, when a dump was asked for.
    pub fn hook(&self) -> Option<(Arc<ActivationRecorder>, Hook)> {
        self.dump_activations.as_ref()?;
        let rec = Arc::new(ActivationRecorder::new(self.dump.iter().cloned()));
        let hook = Hook::new(rec.clone());
        Some((rec, hook))
    }

    /// Checks, before any work, that the dump's folder can be made: no file stands at its path.
    pub fn check(&self) -> anyhow::Result<()> {
        match &self.dump_activations {
            Some(dir) if dir.exists() && !dir.is_dir() => {
                anyhow::bail!("cannot write activations into {}: it is a file", dir.display())
            }
            _ => Ok(()),
        }
    }

    /// Writes what `rec` recorded; returns how many files.
    pub fn write(&self, rec: &ActivationRecorder) -> anyhow::Result<usize> {
        let Some(dir) = &self.dump_activations else { return Ok(0) };
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let acts = rec.take();
        for (i, a) in acts.iter().enumerate() {
            let layer = a.layer.map(|l| format!("-{l}")).unwrap_or_default();
            let path = dir.join(format!("{i:05}-{}{layer}.npy", a.name));
            crate::run::write_atomically(&path, &crate::npy::f32_bytes(&a.data, &[a.data.len()]))?;
        }
        eprintln!("edgevl: wrote {} activations to {}", acts.len(), dir.display());
        Ok(acts.len())
    }
}
