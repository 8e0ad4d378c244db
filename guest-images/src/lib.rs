//! Guest kernels and initramfs built from Debian packages.
