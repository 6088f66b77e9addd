"""The synthetic ChestX-ray14 ("phantom"): drawn chest images labelled with real NIH label rows.

choose.py picks whole real patients, draw.py draws their images, make.py writes the NIH layout
(and is the CLI, `python -m data_prep.phantom`)."""
from data_prep.phantom.choose import PhantomError, choose_patients
from data_prep.phantom.draw import DEFAULT_STRENGTH, SIZE, render
from data_prep.phantom.make import build_parser, main, make_phantom

__all__ = ["DEFAULT_STRENGTH", "SIZE", "PhantomError", "build_parser", "choose_patients", "main",
           "make_phantom", "render"]
