//! `compile_commands.json`: entries per file, with arguments relative to their directory.
