//! One module per noun.

pub(crate) mod conn;
pub(crate) mod coordinator;
pub(crate) mod deploy;
pub(crate) mod evidence;
pub(crate) mod example;
pub(crate) mod image;
pub(crate) mod kbs;
pub(crate) mod keep;
pub(crate) mod launch;
pub(crate) mod platform;
pub(crate) mod quickstart;
pub(crate) mod recover;
pub(crate) mod tour;
