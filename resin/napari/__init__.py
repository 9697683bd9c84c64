"""napari plugin (``pip install 'resin[napari]'``): Enhance, Compare and Train widgets, a
reader for the volumes resin writes, and the demo volume as sample data.

Declared in ``napari.yaml`` (npe2); napari imports the modules it names when a widget, the
reader or the sample is first used. Nothing else in resin imports this package, and this
module imports neither napari nor Qt. Usage: docs/napari.md.
"""
