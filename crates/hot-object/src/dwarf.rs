//! DWARF: compile units, producers and line tables keyed by relocated section.
