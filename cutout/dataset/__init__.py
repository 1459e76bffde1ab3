"""Dataset preparation: a folder of photos in, cut-outs at the same relative paths out.

Plain functions over one item, shared by the command line (``cli.py``), the ComfyUI nodes
(``nodes/dataset_folder.py``) and any later engine:

* ``paths``  — where the nodes may read and write (the path guard), source/dest overlap checks;
* ``reader`` — listing a folder and decoding one file (EXIF orientation applied);
* ``writer`` — backgrounds, output names, atomic saves, caption sidecars, collision policy;
* ``job``    — the pipelined runner (reader threads → inference → writer threads) and its report.

Nothing here imports onnxruntime at module level.
"""
