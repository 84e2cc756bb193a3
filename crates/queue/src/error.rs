//! Errors at the queue's boundary.

/// What can go wrong talking to a queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis did not answer or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A job's arguments could not be encoded as JSON.
    #[error("could not encode job arguments: {0}")]
    Encode(#[source] serde_json::Error),
    /// A job id is empty or too long.
    #[error("invalid job id: {0}")]
    InvalidJobId(String),
    /// A job with this id exists with a different payload (idempotent enqueue refused it).
    #[error("job {id} already exists with a different payload")]
    Conflict {
        /// The job id.
        id: String,
    },
    /// A job with this id is in the dead letters; retry or purge it first.
    #[error("job {id} is in the dead letters")]
    DeadLettered {
        /// The job id.
        id: String,
    },
    /// `REDIS_URL` cannot be read.
    #[error(transparent)]
    Url(#[from] crate::conn::UrlError),
    /// Redis answered something the scripts never return.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}
