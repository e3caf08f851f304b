"""One module per pipeline step; each takes and returns a libvips image."""
