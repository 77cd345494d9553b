//! Writing `weight.bin`: whole blobs from memory, or streamed piece by piece.

use super::layout::{self, HEADER_LEN, METADATA_LEN, Metadata, SENTINEL};
use super::{BlobDtype, BlobError, Result, packed_len, padding_bits};
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Buffer size of the file writer made by [`BlobWriter::create`].
const WRITE_BUFFER: usize = 1 << 20;

/// Name used in errors for a writer that was not given a path.
const UNNAMED: &str = "<weight.bin stream>";

/// Writes a `weight.bin` file blob by blob.
///
/// Blobs are appended in call order; each starts at the end of the file rounded up to 64 bytes.
/// The header's blob count is written by [`BlobWriter::finish`]; a writer dropped without it
/// leaves a file whose header announces no blobs.
#[derive(Debug)]
pub struct BlobWriter<W: Write + Seek> {
    inner: W,
    path: PathBuf,
    /// Length of the file written so far.
    len: u64,
    count: u32,
    /// Metadata offset of a streamed blob that has not been finished.
    unfinished: Option<u64>,
}

impl BlobWriter<BufWriter<File>> {
    /// Creates (or truncates) the file at `path` and writes its header.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| BlobError::Io {
            path: path.to_path_buf(),
            what: "creating the file",
            source,
        })?;
        Self::with_path(BufWriter::with_capacity(WRITE_BUFFER, file), path)
    }

    /// [`finish`](BlobWriter::finish)es the file and syncs it to disk.
    pub fn finish_synced(self) -> Result<()> {
        let path = self.path.clone();
        let io = |what| {
            let path = path.clone();
            move |source| BlobError::Io { path, what, source }
        };
        self.finish()?
            .into_inner()
            .map_err(|e| io("flushing the file")(e.into_error()))?
            .sync_all()
            .map_err(io("syncing the file"))
    }
}

impl<W: Write + Seek> BlobWriter<W> {
    /// Starts a blob file at the beginning of `w` (overwriting what is there) by writing the
    /// header. Errors call the file `<weight.bin stream>`; see [`BlobWriter::with_path`].
    pub fn new(w: W) -> Result<Self> {
        Self::with_path(w, UNNAMED)
    }

    /// Like [`BlobWriter::new`], naming the file `path` in errors.
    pub fn with_path(mut w: W, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let header = layout::encode_header(0);
        let started = w
            .seek(SeekFrom::Start(0))
            .and_then(|_| w.write_all(&header));
        started.map_err(|source| BlobError::Io {
            path: path.clone(),
            what: "writing the header",
            source,
        })?;
        Ok(Self {
            inner: w,
            path,
            len: HEADER_LEN,
            count: 0,
            unfinished: None,
        })
    }

    /// The path named in errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of blobs written and finished so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Length in bytes of the file written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing but the header has been written.
    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    /// Appends one blob of `element_count` elements of `dtype` whose bytes are `data` (packed
    /// for sub-byte dtypes, see [`pack_bits`](super::pack_bits)) and returns its metadata
    /// offset, the value a const's `blobFileValue.offset` refers to.
    ///
    /// `data` must be exactly `ceil(element_count·bits / 8)` bytes; otherwise nothing is written.
    pub fn write_blob(&mut self, dtype: BlobDtype, element_count: u64, data: &[u8]) -> Result<u64> {
        let expected = packed_len(element_count, dtype.bits());
        if data.len() as u64 != expected {
            return Err(BlobError::SizeMismatch {
                path: self.path.clone(),
                offset: layout::align_up(self.len).unwrap_or(u64::MAX),
                dtype,
                element_count,
                expected,
                got: data.len() as u64,
            });
        }
        let mut stream = self.begin_blob(dtype, element_count)?;
        stream.write_all(data).map_err(|source| BlobError::Io {
            path: stream.writer.path.clone(),
            what: "writing blob data",
            source,
        })?;
        stream.finish()
    }

    /// Starts a blob of `element_count` elements of `dtype` whose data is then written through
    /// the returned [`BlobStream`], in as many pieces as wanted, and closed with
    /// [`BlobStream::finish`], which returns the metadata offset.
    ///
    /// Until that stream is finished, every other call on this writer fails with
    /// [`BlobError::Unfinished`].
    pub fn begin_blob(
        &mut self,
        dtype: BlobDtype,
        element_count: u64,
    ) -> Result<BlobStream<'_, W>> {
        self.check_finished()?;
        if self.count == u32::MAX {
            return Err(BlobError::TooManyBlobs {
                path: self.path.clone(),
            });
        }
        let size = packed_len(element_count, dtype.bits());
        let offset = layout::align_up(self.len).ok_or_else(|| self.too_large("metadata"))?;
        let data_offset = offset + METADATA_LEN;
        data_offset
            .checked_add(size)
            .ok_or_else(|| self.too_large("data"))?;
        let metadata = Metadata {
            sentinel: SENTINEL,
            dtype_code: dtype.code(),
            size,
            data_offset,
            padding_bits: padding_bits(element_count, dtype.bits()),
        };
        let gap = [0u8; layout::ALIGNMENT as usize];
        let gap = &gap[..(offset - self.len) as usize];
        let written = self
            .inner
            .write_all(gap)
            .and_then(|()| self.inner.write_all(&metadata.encode()));
        self.unfinished = Some(offset);
        written.map_err(|source| BlobError::Io {
            path: self.path.clone(),
            what: "writing blob metadata",
            source,
        })?;
        self.len = data_offset;
        Ok(BlobStream {
            writer: self,
            offset,
            dtype,
            element_count,
            expected: size,
            written: 0,
        })
    }

    /// Writes the final blob count into the header, flushes, and returns the underlying writer
    /// positioned at the end of the file.
    pub fn finish(mut self) -> Result<W> {
        self.check_finished()?;
        let count = self.count.to_le_bytes();
        let len = self.len;
        let inner = &mut self.inner;
        let done = inner
            .seek(SeekFrom::Start(0))
            .and_then(|_| inner.write_all(&count))
            .and_then(|()| inner.seek(SeekFrom::Start(len)))
            .and_then(|_| inner.flush());
        done.map_err(|source| BlobError::Io {
            path: self.path.clone(),
            what: "writing the header count",
            source,
        })?;
        Ok(self.inner)
    }

    fn check_finished(&self) -> Result<()> {
        match self.unfinished {
            Some(offset) => Err(BlobError::Unfinished {
                path: self.path.clone(),
                offset,
            }),
            None => Ok(()),
        }
    }

    fn too_large(&self, field: &'static str) -> BlobError {
        BlobError::OutOfBounds {
            path: self.path.clone(),
            offset: self.len,
            field,
            start: self.len,
            end: u64::MAX,
            min: HEADER_LEN,
            file_len: u64::MAX,
        }
    }
}

/// The data of one blob being written; see [`BlobWriter::begin_blob`].
///
/// Writes beyond the declared size fail with [`io::ErrorKind::InvalidInput`] and write nothing.
#[derive(Debug)]
pub struct BlobStream<'a, W: Write + Seek> {
    writer: &'a mut BlobWriter<W>,
    offset: u64,
    dtype: BlobDtype,
    element_count: u64,
    expected: u64,
    written: u64,
}

impl<W: Write + Seek> BlobStream<'_, W> {
    /// Metadata offset of this blob.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Data bytes still to be written.
    pub fn remaining(&self) -> u64 {
        self.expected - self.written
    }

    /// Checks that exactly the declared number of bytes was written and returns the blob's
    /// metadata offset. On a size mismatch the writer stays unusable, since the file now holds
    /// a blob whose metadata disagrees with its data.
    pub fn finish(self) -> Result<u64> {
        if self.written != self.expected {
            return Err(BlobError::SizeMismatch {
                path: self.writer.path.clone(),
                offset: self.offset,
                dtype: self.dtype,
                element_count: self.element_count,
                expected: self.expected,
                got: self.written,
            });
        }
        self.writer.unfinished = None;
        self.writer.count += 1;
        Ok(self.offset)
    }
}

impl<W: Write + Seek> Write for BlobStream<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.remaining() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: blob at metadata offset {}: {} more bytes than the {} declared",
                    self.writer.path.display(),
                    self.offset,
                    buf.len() as u64 - self.remaining(),
                    self.expected
                ),
            ));
        }
        let n = self.writer.inner.write(buf)?;
        self.written += n as u64;
        self.writer.len += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.len() as u64 > self.remaining() {
            return self.write(buf).map(drop);
        }
        self.writer.inner.write_all(buf)?;
        self.written += buf.len() as u64;
        self.writer.len += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.inner.flush()
    }
}
