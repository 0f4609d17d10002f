//! One kernel's entry in a [`crate::Kernels`] table ([`KernelEntry`]): its function and whether it is a SIMD build.
//! The GEMM modules name their entries (`packed::PackedKernel`, `fgemm::FloatKernel`, `fpanel::PanelKernel`,
//! `sgemm::SgemmKernel`, the wide packed kernel) and give each its call method and scalar twin.

/// One kernel of a table: the scalar twin, or a SIMD build the table installed after detecting its CPU features.
#[derive(Clone, Copy)]
pub struct KernelEntry<F> {
    f: F,
    simd: bool,
}

impl<F> std::fmt::Debug for KernelEntry<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelEntry").field("simd", &self.simd).finish_non_exhaustive()
    }
}

impl<F: Copy> KernelEntry<F> {
    /// The scalar twin `f`.
    pub(crate) const fn scalar(f: F) -> Self {
        KernelEntry { f, simd: false }
    }

    /// A SIMD build `f` (the caller hands it out only for the proof of its CPU features).
    #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(dead_code))]
    pub(crate) const fn simd(f: F) -> Self {
        KernelEntry { f, simd: true }
    }

    /// The function.
    #[inline]
    pub(crate) fn get(&self) -> F {
        self.f
    }

    /// Whether this is a SIMD build (worth laying weights or activations out for).
    pub fn is_simd(&self) -> bool {
        self.simd
    }
}
