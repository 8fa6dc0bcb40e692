"""Where output goes: a local folder or a Blob container (sinks and their locks), and the output contract's files."""
