//! One module per noun.

pub(crate) mod evidence;
pub(crate) mod platform;
pub(crate) mod quickstart;
