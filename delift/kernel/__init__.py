"""DELIFT's pairwise utility kernel: computation, post-processing and the on-disk cache."""

from delift.kernel.cache import KernelCache, kernel_cache_key
from delift.kernel.postprocess import postprocess_kernel
from delift.kernel.utility import KernelSettings, UtilityKernel, compute_utility_kernel, overflowing_targets

__all__ = [
    "KernelCache",
    "KernelSettings",
    "UtilityKernel",
    "compute_utility_kernel",
    "kernel_cache_key",
    "overflowing_targets",
    "postprocess_kernel",
]
