"""``vitkit predict CKPT PATH...``: the top classes of image files, folders or globs."""

from __future__ import annotations

import argparse

from vitkit.cli.common import add_checkpoint_options, add_fast_path_options, fast_model_for, load_for_inference
from vitkit.errors import VitkitError
from vitkit.options import add_command_options

NAME = "predict"
HELP = "classify images (files, folders, globs): top-k labels with probabilities; --attention saves rollout maps"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_options(parser, data=False)
    parser.add_argument("paths", metavar="PATH", nargs="+", help="image files, folders (searched recursively), globs")
    add_command_options(parser, {"top_k": 5})
    add_command_options(parser, {"attention": None})
    add_fast_path_options(parser)


def run(args: argparse.Namespace) -> dict:
    from vitkit.compiling import compile_errors
    from vitkit.evaluate.predict import expand_image_paths, predict_images

    paths = expand_image_paths(args.paths)
    if args.attention and (args.int8 or args.merge or args.compile):
        raise VitkitError("--attention draws the plain model's attention: leave out --int8/--merge/--compile")
    model, device = load_for_inference(args)
    each_image = None
    if args.attention:
        from vitkit.inspect.overlay import rollout_overlay_writer

        each_image = rollout_overlay_writer(model, args.attention)
    fast, runner = fast_model_for(args, model)
    with compile_errors():
        results = predict_images(runner, paths, top_k=args.top_k, device=device, batch_size=args.batch_size,
                                 each_image=each_image)
    for r in results:
        if r["error"]:
            print(f"{r['path']}: skipped ({r['error']})")
            continue
        tops = ", ".join(f"{p['label']} {100 * p['probability']:.1f}%" for p in r["top"])
        print(f"{r['path']}: {tops}" + (f"  [attention: {r['attention']}]" if r.get("attention") else ""))
    skipped = sum(1 for r in results if r["error"])
    if skipped:
        print(f"skipped unreadable images: {skipped}")
    return {"checkpoint": args.checkpoint, "predictions": results, "skipped_images": skipped, "fast_path": fast.name}
