"""Secrets: the files the jobs read (secret files), which secret goes where (catalog), the Vault Agent
configuration and policy (agent), preparing Vault (bootstrap), and the offline recovery kit."""
