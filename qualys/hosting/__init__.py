"""Azure hosting: the one Azure identity, Key Vault credentials, the timer's run, the HTTP endpoints and their URL allow-list."""
