"""Console entry points used by steps/*.sh and local/*.sh, one module per command."""
