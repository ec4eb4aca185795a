"""Domain plug-ins: each sub-package turns one kind of real data into states of the core and back."""
