//! Process-wide settings that make libtorch fast on CPU.

/// Keeps freed tensor buffers in the heap instead of returning them to the kernel.
///
/// glibc serves large allocations with mmap and unmaps them on free, so every activation of
/// every training step costs fresh page faults: measured here, a small DenseNet's training step
/// spent more time in the kernel than in arithmetic (train step 2.5 s → 1.1 s with this, at the
/// price of a higher resident peak). Call once, before any tensor is made.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; it is called before threads allocate.
    unsafe {
        const ONE_GIB: libc::c_int = 1 << 30;
        libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_GIB);
        libc::mallopt(libc::M_TRIM_THRESHOLD, ONE_GIB);
    }
}
