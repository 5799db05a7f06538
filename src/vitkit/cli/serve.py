"""``vitkit serve CKPT``: a local web page and JSON API for one model (:mod:`vitkit.deploy.serve`)."""

from __future__ import annotations

import argparse

from vitkit.options import add_command_options, add_switches

NAME = "serve"
HELP = ("serve a checkpoint on a local web page (drop an image: top-k classes, the attention overlay, an MAE "
        "model's reconstruction) and a JSON API (POST /predict, /attention, /reconstruct; GET /health)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT",
                        help="a checkpoint, a run directory (its model/), or a name: hf-hub:ORG/REPO, "
                             "official:FOLDER/NAME, https://... (`vitkit models --pretrained`)")
    add_switches(parser, "ema")
    add_command_options(parser, {"host": "127.0.0.1", "port": 8000, "top_k": 5, "max_upload_mb": 20.0,
                                 "max_concurrent": 1, "device": "auto"})


def run(args: argparse.Namespace) -> dict:
    from vitkit.deploy.serve import Service, bind, require_serve, serve
    from vitkit.objectives import load_pretraining
    from vitkit.train.distributed import resolve_device
    from vitkit.train.stopping import Interrupted, stop_signal_of

    require_serve()
    sock = bind(args.host, args.port)  # a port in use is refused before the model is loaded
    try:
        model, objective = load_pretraining(args.checkpoint, device=resolve_device(args.device), ema=args.ema)
        service = Service(model, objective=objective, top_k=args.top_k, max_upload_mb=args.max_upload_mb,
                          max_concurrent=args.max_concurrent)
    except BaseException:
        sock.close()
        raise
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"

    def ready() -> None:
        print(f"serving {service.name} at {url} (Ctrl-C stops)", flush=True)

    try:
        serve(service, sock, on_ready=ready)
    except Interrupted as exc:
        raise Interrupted(f"the server at {url} stopped after answering the requests in flight "
                          f"({service.forwards} forward pass(es) served)", signum=stop_signal_of(exc)) from None
    return {"url": url, "model": service.name, "forwards": service.forwards}
