"""Images domain plug-in: pixels in [-1, 1], U-Net, EDM, classifier-free guidance, inpainting, bits/dim.

Registered as ``images`` through the entry point group ``stochgen.domains``::

    import stochgen
    dom = stochgen.domain("images")            # or domains.images.ImagesDomain()
    model = stochgen.fit(dom, "digits", steps=3000)
"""
from .domain import PROCESSES, ImagesDomain

__all__ = ["ImagesDomain", "PROCESSES"]
