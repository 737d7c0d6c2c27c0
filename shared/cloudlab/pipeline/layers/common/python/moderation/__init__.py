"""Code shared by the moderation pipeline's functions, deployed as a Lambda layer (notebook 06).

On AWS the layer's ``python/`` folder lands in ``/opt/python``, which is on ``sys.path``, so
functions ``import moderation.decisions``. Standard library, boto3 and (for the custom
analyzer) numpy/scikit-learn/Pillow only: never ``cloudlab``.
"""
