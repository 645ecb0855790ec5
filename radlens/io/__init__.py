"""radlens.io: manifests (:mod:`.manifest`), image + ROI loading (:mod:`.images`) and the artifact
store (:mod:`.artifacts`). Import the submodules directly; this package imports nothing heavy."""
