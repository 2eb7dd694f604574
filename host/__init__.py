"""deepkeys on the workstation."""
