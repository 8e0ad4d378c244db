//! The uncompressed kernel ELF (`vmlinux`) out of an x86 `bzImage`, the way
//! the kernel's `scripts/extract-vmlinux` does it: locate the compressed
//! payload, recognise its compression by magic bytes, decompress, and check
//! that the result is an x86-64 ELF executable.
//!
//! The payload is found through the boot protocol header (`payload_offset`,
//! `payload_length`, protocol 2.08+); the kernel's build appends the
//! uncompressed size as a little-endian `u32` to the compressed stream, which
//! is used as a check. Supported: LZ4 legacy frames (Debian 6.1), zstd
//! (Debian 6.12), gzip and xz.

use std::io::Read;

/// Errors while extracting `vmlinux`.
#[derive(Debug, thiserror::Error)]
pub enum BzImageError {
    /// Not a bzImage.
    #[error("The file is not an x86 bzImage: {0}.")]
    NotBzImage(&'static str),
    /// Compression not recognised or not supported.
    #[error("The bzImage payload uses an unsupported compression ({0}).")]
    Unsupported(String),
    /// The payload did not decompress.
    #[error("The {format} payload of the bzImage did not decompress: {detail}.")]
    Corrupt {
        /// Compression format.
        format: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The decompressed data is not what the header said.
    #[error("The decompressed kernel has {got} bytes where the bzImage says {expected}.")]
    SizeMismatch {
        /// Size appended to the payload.
        expected: u64,
        /// Size obtained.
        got: u64,
    },
    /// The result is no x86-64 ELF executable.
    #[error("The decompressed kernel is not an x86-64 ELF executable: {0}.")]
    NotElf(String),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, BzImageError>;

/// Compression formats the kernel may use for its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip.
    Gzip,
    /// xz.
    Xz,
    /// LZ4 legacy frame format (`lz4 -l`).
    Lz4Legacy,
    /// zstd.
    Zstd,
    /// bzip2 (recognised, not supported).
    Bzip2,
    /// lzma alone (recognised, not supported).
    Lzma,
    /// lzo (recognised, not supported).
    Lzo,
}

impl Compression {
    /// Name as the kernel config calls it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Lz4Legacy => "lz4",
            Self::Zstd => "zstd",
            Self::Bzip2 => "bzip2",
            Self::Lzma => "lzma",
            Self::Lzo => "lzo",
        }
    }

    /// Recognises a compressed stream by its first bytes (the magics
    /// `extract-vmlinux` searches for).
    pub fn detect(data: &[u8]) -> Option<Self> {
        const MAGICS: &[(&[u8], Compression)] = &[
            (&[0x1f, 0x8b, 0x08], Compression::Gzip),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Compression::Xz),
            (&[0x02, 0x21, 0x4c, 0x18], Compression::Lz4Legacy),
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
            (b"BZh", Compression::Bzip2),
            (&[0x5d, 0x00, 0x00], Compression::Lzma),
            (&[0x89, b'L', b'Z', b'O'], Compression::Lzo),
        ];
        MAGICS
            .iter()
            .find(|(m, _)| data.starts_with(m))
            .map(|(_, c)| *c)
    }
}

/// The compressed payload of a bzImage and its compression.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    /// The compressed stream, without the appended size.
    pub data: &'a [u8],
    /// The uncompressed size appended by the kernel build.
    pub uncompressed_size: u32,
    /// Compression found by magic.
    pub compression: Option<Compression>,
}

fn le32(data: &[u8], off: usize) -> Option<u32> {
    data.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Finds the payload through the boot protocol header.
pub fn payload(image: &[u8]) -> Result<Payload<'_>> {
    if image.get(0x202..0x206) != Some(b"HdrS".as_slice()) {
        return Err(BzImageError::NotBzImage("no HdrS signature at 0x202"));
    }
    let version = image
        .get(0x206..0x208)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or(BzImageError::NotBzImage("truncated header"))?;
    if version < 0x208 {
        return Err(BzImageError::NotBzImage(
            "boot protocol older than 2.08 has no payload fields",
        ));
    }
    let setup_sects = match image.get(0x1f1) {
        Some(0) => 4usize,
        Some(&n) => n as usize,
        None => return Err(BzImageError::NotBzImage("truncated header")),
    };
    let pm_start = (setup_sects + 1) * 512;
    let offset = le32(image, 0x248).ok_or(BzImageError::NotBzImage("truncated header"))? as usize;
    let length = le32(image, 0x24c).ok_or(BzImageError::NotBzImage("truncated header"))? as usize;
    let start = pm_start
        .checked_add(offset)
        .ok_or(BzImageError::NotBzImage("payload offset overflows"))?;
    let full = start
        .checked_add(length)
        .and_then(|end| image.get(start..end))
        .ok_or(BzImageError::NotBzImage("payload lies outside the file"))?;
    if full.len() < 8 {
        return Err(BzImageError::NotBzImage("payload too short"));
    }
    let (data, size) = full.split_at(full.len() - 4);
    Ok(Payload {
        data,
        uncompressed_size: u32::from_le_bytes([size[0], size[1], size[2], size[3]]),
        compression: Compression::detect(data),
    })
}

/// Extracts and checks the `vmlinux` ELF from a bzImage.
pub fn extract_vmlinux(image: &[u8]) -> Result<Vec<u8>> {
    let payload = payload(image)?;
    let compression = payload.compression.ok_or_else(|| {
        let head: Vec<String> = payload
            .data
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        BzImageError::Unsupported(format!("unknown magic {}", head.join(" ")))
    })?;
    log::debug!(
        "bzImage payload: {} bytes of {}, {} bytes uncompressed",
        payload.data.len(),
        compression.name(),
        payload.uncompressed_size
    );
    let out = decompress(
        compression,
        payload.data,
        payload.uncompressed_size as usize,
    )?;
    if out.len() as u64 != u64::from(payload.uncompressed_size) {
        return Err(BzImageError::SizeMismatch {
            expected: payload.uncompressed_size.into(),
            got: out.len() as u64,
        });
    }
    check_kernel_elf(&out)?;
    Ok(out)
}

/// Decompresses a whole stream of the given format.
pub fn decompress(compression: Compression, data: &[u8], size_hint: usize) -> Result<Vec<u8>> {
    let corrupt = |format: &'static str| {
        move |e: std::io::Error| BzImageError::Corrupt {
            format,
            detail: e.to_string(),
        }
    };
    let mut out = Vec::with_capacity(size_hint);
    match compression {
        Compression::Gzip => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(corrupt("gzip"))?;
        }
        Compression::Xz => {
            let mut input = data;
            lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| BzImageError::Corrupt {
                format: "xz",
                detail: e.to_string(),
            })?;
        }
        Compression::Zstd => {
            let mut dec =
                ruzstd::StreamingDecoder::new(data).map_err(|e| BzImageError::Corrupt {
                    format: "zstd",
                    detail: e.to_string(),
                })?;
            dec.read_to_end(&mut out).map_err(corrupt("zstd"))?;
        }
        Compression::Lz4Legacy => lz4_legacy(data, &mut out)?,
        other => return Err(BzImageError::Unsupported(other.name().to_string())),
    }
    Ok(out)
}

/// Decodes the LZ4 legacy frame format: a magic, then blocks of
/// (little-endian u32 compressed size, LZ4 block) each decoding to at most
/// 8 MiB; another magic may start a new frame. Decoding stops at the end of
/// the input, as the kernel's `unlz4` does with a known input length.
pub fn lz4_legacy(data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    const MAGIC: u32 = 0x184c_2102;
    const BLOCK_MAX: usize = 8 << 20;
    let corrupt = |detail: String| BzImageError::Corrupt {
        format: "lz4",
        detail,
    };
    if le32(data, 0) != Some(MAGIC) {
        return Err(corrupt("missing legacy frame magic".into()));
    }
    let mut pos = 4;
    let mut block = vec![0u8; BLOCK_MAX];
    while pos < data.len() {
        let size =
            le32(data, pos).ok_or_else(|| corrupt(format!("truncated block header at {pos}")))?;
        pos += 4;
        if size == MAGIC {
            continue;
        }
        let size = size as usize;
        let end = pos
            .checked_add(size)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| corrupt(format!("block of {size} bytes at {pos} runs past the end")))?;
        let n = lz4_flex::block::decompress_into(&data[pos..end], &mut block)
            .map_err(|e| corrupt(format!("block at {pos}: {e}")))?;
        out.extend_from_slice(&block[..n]);
        pos = end;
    }
    Ok(())
}

/// Checks that `data` is an x86-64 ELF executable.
pub fn check_kernel_elf(data: &[u8]) -> Result<()> {
    let header =
        goblin::elf::Elf::parse_header(data).map_err(|e| BzImageError::NotElf(e.to_string()))?;
    if header.e_machine != goblin::elf::header::EM_X86_64 {
        return Err(BzImageError::NotElf(format!(
            "machine {} is not x86-64",
            header.e_machine
        )));
    }
    if header.e_type != goblin::elf::header::ET_EXEC {
        return Err(BzImageError::NotElf(format!(
            "type {} is not an executable",
            header.e_type
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal_elf() -> Vec<u8> {
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2; // 64-bit
        e[5] = 1; // little endian
        e[6] = 1; // version
        e[16] = 2; // ET_EXEC
        e[18] = 62; // EM_X86_64
        e[20] = 1;
        e[52] = 64; // e_ehsize
        e.extend(std::iter::repeat_n(0xabu8, 20_000));
        e
    }

    fn fake_bzimage(payload: &[u8], uncompressed: usize) -> Vec<u8> {
        let setup_sects = 3u8;
        let pm = (setup_sects as usize + 1) * 512;
        let mut img = vec![0u8; pm];
        img[0x1f1] = setup_sects;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        let off = 100u32;
        let mut full = payload.to_vec();
        full.extend_from_slice(&(uncompressed as u32).to_le_bytes());
        img[0x248..0x24c].copy_from_slice(&off.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(full.len() as u32).to_le_bytes());
        img.extend(std::iter::repeat_n(0u8, off as usize));
        img.extend_from_slice(&full);
        img.extend_from_slice(&[0u8; 16]);
        img
    }

    #[test]
    fn lz4_legacy_bzimage_is_extracted() {
        let elf = minimal_elf();
        let mut stream = 0x184c_2102u32.to_le_bytes().to_vec();
        for chunk in elf.chunks(7000) {
            let block = lz4_flex::block::compress(chunk);
            stream.extend_from_slice(&(block.len() as u32).to_le_bytes());
            stream.extend_from_slice(&block);
        }
        let img = fake_bzimage(&stream, elf.len());
        assert_eq!(
            payload(&img).unwrap().compression,
            Some(Compression::Lz4Legacy)
        );
        assert_eq!(extract_vmlinux(&img).unwrap(), elf);
    }

    #[test]
    fn gzip_bzimage_is_extracted() {
        use std::io::Write;
        let elf = minimal_elf();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&elf).unwrap();
        let img = fake_bzimage(&enc.finish().unwrap(), elf.len());
        assert_eq!(extract_vmlinux(&img).unwrap(), elf);
    }

    #[test]
    fn wrong_size_and_non_elf_are_rejected() {
        use std::io::Write;
        let elf = minimal_elf();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&elf).unwrap();
        let gz = enc.finish().unwrap();
        assert!(matches!(
            extract_vmlinux(&fake_bzimage(&gz, elf.len() + 1)),
            Err(BzImageError::SizeMismatch { .. })
        ));
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[0u8; 100]).unwrap();
        assert!(matches!(
            extract_vmlinux(&fake_bzimage(&enc.finish().unwrap(), 100)),
            Err(BzImageError::NotElf(_))
        ));
    }

    #[test]
    fn garbage_is_not_a_bzimage_and_does_not_panic() {
        assert!(matches!(
            extract_vmlinux(b"nope"),
            Err(BzImageError::NotBzImage(_))
        ));
        let mut img = fake_bzimage(b"\x01\x02\x03\x04\x05\x06\x07\x08", 8);
        assert!(matches!(
            extract_vmlinux(&img),
            Err(BzImageError::Unsupported(_))
        ));
        img[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            extract_vmlinux(&img),
            Err(BzImageError::NotBzImage(_))
        ));
        let mut lz = 0x184c_2102u32.to_le_bytes().to_vec();
        lz.extend_from_slice(&1000u32.to_le_bytes());
        lz.extend_from_slice(&[0xff; 10]);
        assert!(matches!(
            lz4_legacy(&lz, &mut Vec::new()),
            Err(BzImageError::Corrupt { .. })
        ));
    }
}
