//! The codes of a block's payload (see [`crate::block`] for the whole layout): the flag bits
//! of an event's `@rawstring` and the layout of the plain texts. The block writes them and
//! [`crate::view`] reads them.

/// Flag bit 4: the event has no `@rawstring`.
pub(crate) const NO_RAW: u8 = 1 << 4;
/// Flag bit 5: the `@rawstring` holds a line break (it is stored apart from the plain texts).
pub(crate) const ODD_RAW: u8 = 1 << 5;
/// Flag bit 6: the `@rawstring` is rebuilt from a template and the event's field columns (see
/// [`crate::template`]).
pub(crate) const TEMPLATED: u8 = 1 << 6;
/// The plain texts one after another, each followed by a newline.
pub(crate) const LAYOUT_LINES: u8 = 0;
/// Written by format 1 before layout 2 named its separator; still read.
pub(crate) const LAYOUT_SPLIT_AT_COMMAS: u8 = 1;
/// The plain texts cut into columns at a separator.
pub(crate) const LAYOUT_SPLIT: u8 = 2;
