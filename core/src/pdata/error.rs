// SPDX-License-Identifier: GPL-2.0-only
//! The error of persistent-data reads: which block, and what was wrong
//! with it.

use super::block::{Block, BlockError};

/// Where and why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PdError {
    /// The block.
    pub block: Block,
    /// The problem.
    pub kind: BlockError,
}

/// Result of persistent-data reads.
pub type PdResult<T> = core::result::Result<T, PdError>;
