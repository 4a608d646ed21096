//! h3fleet
#![deny(unsafe_code)]
pub mod cache;
