//! Attesters: obtain evidence for given report data on this machine.
