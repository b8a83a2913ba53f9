"""``fedhub deploy helm-values``: the Helm values of a Kubernetes deployment, from the tiers."""

from __future__ import annotations

from pathlib import Path

import click

from fedhub.errors import ConfigError
from fedhub.tiers import load_tiers

CHARTS = ("jupyterhub", "dask-gateway")


@click.group("deploy")
def command():
    """Deploy fedhub beyond one machine (docs/deploy-kubernetes.md)."""


@command.command("helm-values")
@click.option(
    "--tiers",
    "tiers_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="The tiers file (default: the one fedhub's configuration names, else hub_config/tiers.yaml).",
)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    help="Where to write the values ('-': standard output).",
)
@click.option(
    "--chart",
    type=click.Choice(CHARTS),
    default="jupyterhub",
    show_default=True,
    help="Zero to JupyterHub's chart, or the dask-gateway chart.",
)
@click.option(
    "--image-repository",
    default=None,
    help="Registry path of the hub and user images (default: registry.example.org/fedhub).",
)
@click.option("--tag", default=None, help="Image tag (default: fedhub's version).")
@click.option(
    "--guarantee-fraction",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Guarantees (requests) as a share of each profile's limits.",
)
def helm_values(tiers_path, output, chart, image_repository, tag, guarantee_fraction):
    """Write the Helm values fedhub adds to the chart, made from the tiers.

    Give them to helm before your site's own values:
    helm upgrade --install fedhub jupyterhub/jupyterhub -f values.yaml -f site.yaml
    """
    from fedhub.deploy import helm

    catalog = load_tiers(tiers_path)
    images = {}
    if image_repository:
        images["image_repository"] = image_repository
    if tag:
        images["tag"] = tag
    if chart == "jupyterhub":
        data = helm.values(catalog, guarantee_fraction=guarantee_fraction, **images)
        what = "Zero to JupyterHub values"
    else:
        data = helm.dask_gateway_values(catalog, **images)
        what = "dask-gateway chart values"
    flags = "".join(
        [
            f" --tiers {tiers_path}" if tiers_path else "",
            f" --chart {chart}" if chart != "jupyterhub" else "",
            f" --image-repository {image_repository}" if image_repository else "",
            f" --tag {tag}" if tag else "",
            f" --guarantee-fraction {guarantee_fraction:g}" if guarantee_fraction != 0.5 else "",
        ]
    )
    text = helm.render(
        data,
        what=what,
        source=tiers_path or "the configured tiers file",
        flag=flags,
    )
    if output == "-":
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text)
    except OSError as e:
        raise ConfigError(f"cannot write {output}: {e.strerror}") from None
    click.echo(f"wrote {output}", err=True)
