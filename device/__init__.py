"""deepkeys on the device."""
