//! The webhook channel (being written).
