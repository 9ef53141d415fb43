//! Artifact content streamed to a client: read from storage in chunks as the client takes them,
//! so a large artifact is never held in memory.

use tokio::io::AsyncRead;
use tokio_stream::{Stream, StreamExt};
use tokio_util::io::ReaderStream;
use tonic::Status;

use super::status;

/// The messages of a download: `message` turns each chunk of `reader` (at most `chunk_size`
/// bytes) into a message, and is called once more with `None` after the last chunk, for a
/// trailing message if it wants one. A read error ends the stream with INTERNAL (its details
/// go to the log).
pub(super) fn chunks<R, M>(
    reader: R,
    chunk_size: usize,
    mut message: impl FnMut(Option<Vec<u8>>) -> Option<M> + Send + 'static,
) -> impl Stream<Item = Result<M, Status>> + Send + 'static
where
    R: AsyncRead + Send + 'static,
    M: Send + 'static,
{
    let mut failed = false;
    ReaderStream::with_capacity(reader, chunk_size)
        .map(Some)
        .chain(tokio_stream::once(None))
        .filter_map(move |read| match read {
            Some(Ok(data)) => message(Some(data.to_vec())).map(Ok),
            Some(Err(error)) => {
                failed = true;
                Some(Err(status::artifact_unreadable(error)))
            }
            None if failed => None,
            None => message(None).map(Ok),
        })
}
