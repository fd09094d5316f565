"""Piezoresponse force microscopy (PFM): domain-wall movies, wall finding, switching.

``simulate`` makes phase movies with ground truth, ``walls`` finds walls (Canny) and
cuts wall-centred windows, ``switching`` computes the switching degree and the wall
curvature, ``workflow`` runs the whole chain with a skip-rVAE.
"""
