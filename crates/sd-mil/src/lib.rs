//! `sd-mil`: the Core ML ML Program ("MIL") spine of the sd toolkit.
//!
//! It holds a typed program IR, one catalogue of ops, the protobuf reader and writer, the
//! `weight.bin` blob format and `.mlpackage` read/write.

pub mod blob;
