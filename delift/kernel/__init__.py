"""DELIFT's pairwise utility kernel: computation, post-processing and the on-disk cache."""

from delift.kernel.cache import KernelCache, kernel_cache_key
from delift.kernel.postprocess import postprocess_kernel
from delift.kernel.utility import KernelSettings, UtilityKernel, overflowing_targets

__all__ = [
    "KernelCache",
    "KernelSettings",
    "UtilityKernel",
    "kernel_cache_key",
    "overflowing_targets",
    "postprocess_kernel",
]
