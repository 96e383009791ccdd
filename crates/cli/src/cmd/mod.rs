//! One module per noun.

pub mod evidence;
pub mod platform;
pub mod quickstart;
