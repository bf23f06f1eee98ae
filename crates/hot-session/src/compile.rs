//! Compiling one translation unit into a patch object, and compiler output into diagnostics.
