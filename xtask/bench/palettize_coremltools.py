"""coremltools' side of `cargo xtask bench compress`: k-means palettization of one package.

usage: palettize_coremltools.py SRC.mlpackage DST.mlpackage NBITS
Prints the seconds the palettization and save took (the model is loaded without compiling).
"""
import sys
import time

import coremltools as ct
from coremltools.optimize.coreml import OpPalettizerConfig, OptimizationConfig, palettize_weights


def main():
    src, dst, nbits = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start = time.time()
    model = ct.models.MLModel(src, skip_model_load=True)
    config = OptimizationConfig(
        global_config=OpPalettizerConfig(mode="kmeans", nbits=nbits, weight_threshold=2048)
    )
    palettized = palettize_weights(model, config)
    palettized.save(dst)
    print(f"{time.time() - start:.3f}")


if __name__ == "__main__":
    main()
