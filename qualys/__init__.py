"""The Qualys data connector for Azure: Qualys host assets and vulnerability findings into Azure as normalized JSON."""
