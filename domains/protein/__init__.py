"""The ``protein`` domain: backbone frames x sequence (segment co-design, conformational ensembles)."""
