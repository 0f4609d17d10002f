//! The vision families edgevl runs, told apart by `clip.projector_type` (and, for `lfm2`, by
//! `edgevl.vision.layout`), with what distinguishes them as data: the model code, the
//! preprocessing and the prompt builder each match on [`VisionFamily`] exhaustively.
//!
//! | family | tower | merge | projector | tiles | prompt |
//! |---|---|---|---|---|---|
//! | [`VisionFamily::EdgeVl`] (this project, BlueLM-V-3B's design) | SigLIP, 384, tanh GELU | 2x2 | LN, Linear, tanh GELU, Linear | relaxed, 384, global view first | embeddings only |
//! | [`VisionFamily::InternVl`] (InternVL 2.5 / 3) | InternViT: class token, layer scales, erf GELU | pixel shuffle 0.5 | LN, Linear, erf GELU, Linear | closest aspect ratio, 448, thumbnail last | `<img>` + `<IMG_CONTEXT>` x 256 a view + `</img>` |
//! | [`VisionFamily::Idefics3`] (SmolVLM) | SigLIP, 512, tanh GELU, post-LN | pixel shuffle, scale 4 | one Linear | longest edge, 512 tiles, global image last | `<fake_token_around_image><row_R_col_C>` + `<image>` x 64 a tile |

use crate::clip;
use edgevl_gguf::{GgufError, Metadata};

/// Errors telling which family an mmproj file holds.
#[derive(Debug, thiserror::Error)]
pub enum FamilyError {
    /// A metadata key could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// An `lfm2` file without `edgevl.vision.layout`: LFM2-VL, which edgevl does not run.
    #[error("this mmproj is LFM2-VL's (projector type 'lfm2' without '{key}'); edgevl runs its own lfm2 layout, InternVL ('internvl') and SmolVLM ('idefics3') files, not LFM2-VL", key = clip::EDGEVL_LAYOUT)]
    Lfm2Vl,
    /// A language model's file given where an mmproj was expected.
    #[error("this is a language model's file (architecture '{arch}'), not an mmproj: give it with -m (--model), and the vision encoder's file with --mmproj")]
    NotAnMmproj {
        /// `general.architecture` of the file.
        arch: String,
    },
    /// A projector type edgevl does not run.
    #[error("projector type '{found}' is not supported; edgevl runs 'lfm2' (with '{key}'), 'internvl' and 'idefics3' mmproj files", key = clip::EDGEVL_LAYOUT)]
    Unsupported {
        /// The type found in the file.
        found: String,
    },
    /// An `edgevl.vision.layout` value edgevl does not know.
    #[error("unknown {key} '{found}' (known: global-first)", key = clip::EDGEVL_LAYOUT)]
    UnknownLayout {
        /// The value found.
        found: String,
    },
}

/// The GELU form a layer uses (`clip.use_gelu` does not say which: the family does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gelu {
    /// `x * Phi(x)` with the exact error function (PyTorch `nn.GELU()`, `"gelu"`).
    Erf,
    /// The tanh approximation (`"gelu_pytorch_tanh"`).
    Tanh,
}

/// Which projector follows the merge (tensor names in [`clip::MmTensor`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProjectorLayout {
    /// `mm.input_norm` (optional LayerNorm, eps 1e-5), `mm.1`, GELU, `mm.2` (llama.cpp's `lfm2`).
    Lfm2,
    /// InternVL's `mlp1`: `mm.model.mlp.0` LayerNorm (eps 1e-5), `mm.model.mlp.1`, GELU,
    /// `mm.model.mlp.3`.
    InternVlMlp,
    /// Idefics3's connector: `mm.model.fc`, one Linear without bias.
    Idefics3Linear,
}

/// Resampling filter of the family's image processor (PIL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resample {
    /// `PIL.Image.BICUBIC`.
    Bicubic,
    /// `PIL.Image.LANCZOS`.
    Lanczos,
}

/// The family's own tiling rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tiling {
    /// BlueLM-V-3B's relaxed aspect-ratio matching (16 tiles).
    Relaxed,
    /// InternVL's closest aspect ratio (`clip.vision.preproc_min_tiles`..`preproc_max_tiles`).
    InternVl,
    /// Idefics3's longest edge (`clip.vision.preproc_image_size`) in 512-pixel tiles.
    Idefics3,
}

/// Side in pixels of this project's tiles (spec section 2). llama.cpp's converter writes
/// `clip.vision.image_size = 256` into every `lfm2` file whatever the model, so the `lfm2`
/// family does not take its tile size from the file.
pub const EDGEVL_TILE_SIZE: usize = 384;

/// Side of the tile the family's encoder takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileSize {
    /// Always this many pixels.
    Fixed(usize),
    /// `clip.vision.image_size`.
    FromFile,
}

/// How an image enters the prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PromptLayout {
    /// The views' embeddings in order at the image's marker, no tokens around them (spec 2b).
    EmbeddingsOnly,
    /// InternVL: the placeholder becomes `start` + `context` x (tokens a view x views) + `end`.
    InternVl {
        /// What the chat template writes for an image part.
        part_text: &'static str,
        /// What in it marks the image (replaced by the expansion).
        placeholder: &'static str,
        /// Opens the image.
        start: &'static str,
        /// One per embedding row.
        context: &'static str,
        /// Closes the image.
        end: &'static str,
    },
    /// Idefics3: per tile `fake` + `<row_R_col_C>` + `image` x tokens, `\n` after each tile row,
    /// then `\n` + `fake` + `global` + `image` x tokens + `fake`; an unsplit image uses the global
    /// form alone.
    Idefics3 {
        /// What the chat template writes for an image part.
        part_text: &'static str,
        /// What in it marks the image (replaced by the expansion).
        placeholder: &'static str,
        /// `<fake_token_around_image>`.
        fake: &'static str,
        /// One per embedding row.
        image: &'static str,
        /// `<global-img>`.
        global: &'static str,
    },
}

impl PromptLayout {
    /// The token text that stands for one embedding row, if the layout has one.
    pub fn row_token(self) -> Option<&'static str> {
        match self {
            PromptLayout::EmbeddingsOnly => None,
            PromptLayout::InternVl { context, .. } => Some(context),
            PromptLayout::Idefics3 { image, .. } => Some(image),
        }
    }

    /// The text that marks an image in the rendered prompt (replaced by the expansion).
    pub fn placeholder(self) -> Option<&'static str> {
        match self {
            PromptLayout::EmbeddingsOnly => None,
            PromptLayout::InternVl { placeholder, .. } | PromptLayout::Idefics3 { placeholder, .. } => {
                Some(placeholder)
            }
        }
    }

    /// The text the family's chat template writes for an image part (the placeholder, and for
    /// InternVL a newline); used in place of the image where a template renders only strings.
    pub fn part_text(self) -> Option<&'static str> {
        match self {
            PromptLayout::EmbeddingsOnly => None,
            PromptLayout::InternVl { part_text, .. } | PromptLayout::Idefics3 { part_text, .. } => {
                Some(part_text)
            }
        }
    }
}

/// Idefics3's tile position token, `<row_{row}_col_{col}>` (1-based).
pub fn idefics3_row_col_token(row: u32, col: u32) -> String {
    format!("<row_{row}_col_{col}>")
}

/// A vision family: tower variant, merge, projector, preprocessing and prompt layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VisionFamily {
    /// This project's layout: `lfm2` projector with `edgevl.vision.layout = global-first`.
    EdgeVl,
    /// InternVL 2.5 / 3 (`internvl`).
    InternVl,
    /// SmolVLM / Idefics3 (`idefics3`).
    Idefics3,
}

/// `edgevl.vision.layout` of this project's files.
pub const LAYOUT_GLOBAL_FIRST: &str = "global-first";

impl VisionFamily {
    /// Every family.
    pub const ALL: [VisionFamily; 3] = [VisionFamily::EdgeVl, VisionFamily::InternVl, VisionFamily::Idefics3];

    /// The family's name in messages and `--family` options: `edgevl`, `internvl`, `idefics3`.
    pub fn name(self) -> &'static str {
        match self {
            VisionFamily::EdgeVl => "edgevl",
            VisionFamily::InternVl => "internvl",
            VisionFamily::Idefics3 => "idefics3",
        }
    }

    /// The family called `name` (as [`VisionFamily::name`] gives).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// `clip.projector_type` of its files.
    pub fn projector_type(self) -> &'static str {
        match self {
            VisionFamily::EdgeVl => "lfm2",
            VisionFamily::InternVl => "internvl",
            VisionFamily::Idefics3 => "idefics3",
        }
    }

    /// The family of an mmproj file: `clip.projector_type` (or `clip.vision.projector_type`),
    /// and for `lfm2` the presence of `edgevl.vision.layout`.
    pub fn detect(md: &Metadata) -> Result<Self, FamilyError> {
        let ty = match md.opt_str(clip::PROJECTOR_TYPE)? {
            Some(t) => t,
            None => md.get_str(clip::VISION_PROJECTOR_TYPE).map_err(|_| {
                match md.opt_str(crate::general::ARCHITECTURE).ok().flatten() {
                    Some(arch) if arch != crate::general::ARCH_CLIP => {
                        FamilyError::NotAnMmproj { arch: arch.to_string() }
                    }
                    _ => GgufError::MissingKey(clip::PROJECTOR_TYPE.into()).into(),
                }
            })?,
        };
        let family = Self::ALL
            .into_iter()
            .find(|f| f.projector_type() == ty)
            .ok_or_else(|| FamilyError::Unsupported { found: ty.to_string() })?;
        if family == VisionFamily::EdgeVl {
            match md.opt_str(clip::EDGEVL_LAYOUT)? {
                None => return Err(FamilyError::Lfm2Vl),
                Some(LAYOUT_GLOBAL_FIRST) => {}
                Some(other) => return Err(FamilyError::UnknownLayout { found: other.to_string() }),
            }
        }
        Ok(family)
    }

    /// Side of the tiles its encoder takes.
    pub fn tile_size(self) -> TileSize {
        match self {
            VisionFamily::EdgeVl => TileSize::Fixed(EDGEVL_TILE_SIZE),
            VisionFamily::InternVl | VisionFamily::Idefics3 => TileSize::FromFile,
        }
    }

    /// Whether the tower prepends a class token (which takes position embedding 0 and is dropped
    /// before the merge).
    pub fn class_token(self) -> bool {
        matches!(self, VisionFamily::InternVl)
    }

    /// Whether each block scales its two branches (`ls1`, `ls2`).
    pub fn layer_scale(self) -> bool {
        matches!(self, VisionFamily::InternVl)
    }

    /// The GELU of the tower's MLP.
    pub fn tower_gelu(self) -> Gelu {
        match self {
            VisionFamily::InternVl => Gelu::Erf,
            VisionFamily::EdgeVl | VisionFamily::Idefics3 => Gelu::Tanh,
        }
    }

    /// The projector after the merge.
    pub fn projector(self) -> ProjectorLayout {
        match self {
            VisionFamily::EdgeVl => ProjectorLayout::Lfm2,
            VisionFamily::InternVl => ProjectorLayout::InternVlMlp,
            VisionFamily::Idefics3 => ProjectorLayout::Idefics3Linear,
        }
    }

    /// The GELU inside the projector (none for a single Linear).
    pub fn projector_gelu(self) -> Option<Gelu> {
        match self.projector() {
            ProjectorLayout::Lfm2 => Some(Gelu::Tanh),
            ProjectorLayout::InternVlMlp => Some(Gelu::Erf),
            ProjectorLayout::Idefics3Linear => None,
        }
    }

    /// Merge block side the family requires, if it fixes one (this project: 2x2, spec 2b);
    /// otherwise `clip.vision.projector.scale_factor` decides.
    pub fn fixed_scale_factor(self) -> Option<usize> {
        match self {
            VisionFamily::EdgeVl => Some(2),
            VisionFamily::InternVl | VisionFamily::Idefics3 => None,
        }
    }

    /// The image processor's resampling filter.
    pub fn resample(self) -> Resample {
        match self {
            VisionFamily::EdgeVl | VisionFamily::InternVl => Resample::Bicubic,
            VisionFamily::Idefics3 => Resample::Lanczos,
        }
    }

    /// The family's own tiling rule (`--strategy family`).
    pub fn tiling(self) -> Tiling {
        match self {
            VisionFamily::EdgeVl => Tiling::Relaxed,
            VisionFamily::InternVl => Tiling::InternVl,
            VisionFamily::Idefics3 => Tiling::Idefics3,
        }
    }

    /// Whether the global view (thumbnail) follows the tiles (it leads in this project's layout).
    pub fn global_view_last(self) -> bool {
        !matches!(self, VisionFamily::EdgeVl)
    }

    /// Whether the family's processor composites a file's transparent colour (Pillow's
    /// `info["transparency"]`) onto white, as transformers' `convert_to_rgb` does for InternVL
    /// and SmolVLM; this project's reference converts with `convert("RGB")` alone.
    pub fn composites_transparency(self) -> bool {
        !matches!(self, VisionFamily::EdgeVl)
    }

    /// How an image enters the prompt.
    pub fn prompt(self) -> PromptLayout {
        match self {
            VisionFamily::EdgeVl => PromptLayout::EmbeddingsOnly,
            VisionFamily::InternVl => PromptLayout::InternVl {
                part_text: "<IMG_CONTEXT>\n",
                placeholder: "<IMG_CONTEXT>",
                start: "<img>",
                context: "<IMG_CONTEXT>",
                end: "</img>",
            },
            VisionFamily::Idefics3 => PromptLayout::Idefics3 {
                part_text: "<image>",
                placeholder: "<image>",
                fake: "<fake_token_around_image>",
                image: "<image>",
                global: "<global-img>",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgevl_gguf::Value;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        let mut m = Metadata::new();
        for (k, v) in pairs {
            m.set(k.to_string(), Value::Str(v.to_string()));
        }
        m
    }

    #[test]
    fn detects_each_family_and_refuses_the_rest() {
        let f = |p: &[(&str, &str)]| VisionFamily::detect(&md(p));
        assert_eq!(f(&[(clip::PROJECTOR_TYPE, "internvl")]).unwrap(), VisionFamily::InternVl);
        assert_eq!(f(&[(clip::PROJECTOR_TYPE, "idefics3")]).unwrap(), VisionFamily::Idefics3);
        assert_eq!(f(&[(clip::VISION_PROJECTOR_TYPE, "idefics3")]).unwrap(), VisionFamily::Idefics3);
        let ours = [(clip::PROJECTOR_TYPE, "lfm2"), (clip::EDGEVL_LAYOUT, LAYOUT_GLOBAL_FIRST)];
        assert_eq!(f(&ours).unwrap(), VisionFamily::EdgeVl);
        assert!(matches!(f(&[(clip::PROJECTOR_TYPE, "lfm2")]), Err(FamilyError::Lfm2Vl)));
        let e = f(&[(clip::PROJECTOR_TYPE, "lfm2"), (clip::EDGEVL_LAYOUT, "tiles-first")]).unwrap_err();
        assert!(e.to_string().contains("tiles-first"), "{e}");
        let e = f(&[(clip::PROJECTOR_TYPE, "qwen2vl_merger")]).unwrap_err();
        assert!(e.to_string().contains("qwen2vl_merger"), "{e}");
        assert!(f(&[]).unwrap_err().to_string().contains(clip::PROJECTOR_TYPE));
        for fam in VisionFamily::ALL {
            assert_eq!(VisionFamily::from_name(fam.name()), Some(fam));
        }
    }
}
