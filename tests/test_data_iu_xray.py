"""IU X-ray reports: the protocol on tiny archives in the real format, and on the real archive."""

import io
import tarfile

import pytest
import torch

from neurocl.data import IUXrayReports
from neurocl.data.iu_xray import default_archive, read_reports
from neurocl.errors import ConfigError, DataError

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <uId id="CXR{n}"/>
   <MedlineCitation><Article><Abstract>
      <AbstractText Label="COMPARISON">None.</AbstractText>
      <AbstractText Label="INDICATION">Chest pain.</AbstractText>
      <AbstractText Label="FINDINGS">{findings}</AbstractText>
      <AbstractText Label="IMPRESSION">{impression}</AbstractText>
   </Abstract></Article></MedlineCitation>
   <MeSH>{mesh}</MeSH>
</eCitation>
"""


def write_archive(path, reports, extra=None):
    """reports: (findings, impression, [major headings]) per report, written as ecgen-radiology/<n>.xml."""
    with tarfile.open(path, "w:gz") as tar:
        files = {f"ecgen-radiology/{n}.xml": REPORT.format(
            n=n, findings=f, impression=i, mesh="".join(f"<major>{m}</major>" for m in majors)).encode()
            for n, (f, i, majors) in enumerate(reports, start=1)}
        files.update(extra or {})
        for name, raw in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    read_reports.cache_clear()
    return path


def tiny_reports():
    """6 x 'normal', 4 x 'Lung/...' (with Emphysema), 4 x 'Opacity', 2 x 'Spine', plus reports that the
    protocol drops: two kept terms, no text."""
    reports = [(f"Clear lungs {i}.", "Normal.", ["normal"]) for i in range(6)]
    reports += [(f"Hyperinflated lungs {i}.", "COPD.", ["Lung/hyperdistention/mild", "Emphysema"]) for i in range(4)]
    reports += [(f"Opacity at the base {i}.", "", ["Opacity/lung/base/left"]) for i in range(4)]
    reports += [(f"Degenerative spine {i}.", "Stable.", ["Spine/degenerative"]) for i in range(2)]
    reports += [("Two findings.", "", ["Lung/hypoinflation", "Opacity/lung"])]  # two kept terms: dropped
    reports += [("", "", ["normal"])]  # no text: dropped
    return reports


def test_protocol_on_a_tiny_archive(tmp_path):
    path = write_archive(tmp_path / "NLMCXR_reports.tgz", tiny_reports())
    data = IUXrayReports(path=str(path), num_terms=3, min_reports=3, test_fraction=0.5)
    reports, labels, names = data.selection()
    # the 3 most frequent terms are normal (7), Lung (5), Opacity (5); Emphysema and Spine are not kept, so the
    # Lung reports hold exactly one kept term; Lung and Opacity tie at 4 kept reports: by name
    assert names == ["normal", "Lung", "Opacity"]
    assert labels.bincount().tolist() == [6, 4, 4] and len(reports) == 14
    lung = reports[labels.tolist().index(1)]
    assert lung.text.startswith("Hyperinflated lungs") and lung.text.endswith("COPD.")
    assert lung.terms == ("Lung", "Emphysema")  # the text before the first '/'
    opacity = reports[labels.tolist().index(2)]
    assert opacity.text == f"{opacity.section('FINDINGS')}"  # empty IMPRESSION adds nothing
    splits = data.load()
    assert splits.modality == "text" and splits.class_names == names
    assert splits.train.labels.bincount().tolist() == [3, 2, 2]  # stratified halves
    assert set(splits.train.ids).isdisjoint(splits.test.ids) and all(i.startswith("CXR") for i in splits.test.ids)
    again = IUXrayReports(path=str(path), num_terms=3, min_reports=3, test_fraction=0.5).load()
    assert again.train.ids == splits.train.ids  # the split is fixed, whatever the run's seed


def test_multi_label_variant_keeps_every_frequent_term(tmp_path):
    path = write_archive(tmp_path / "NLMCXR_reports.tgz", tiny_reports())
    reports, labels, names = IUXrayReports(path=str(path), labels="multi", min_reports=4).selection()
    assert names == ["normal", "Lung", "Opacity", "Emphysema"]
    assert labels.shape == (len(reports), 4) and labels.sum(0).tolist() == [6, 5, 5, 4]
    both = [i for i, r in enumerate(reports) if r.text == "Two findings."][0]
    assert labels[both].tolist() == [0, 1, 1, 0]
    splits = IUXrayReports(path=str(path), labels="multi", min_reports=4).load()
    assert splits.train.multi_label and splits.train.label_names == names


def test_malformed_archives_name_the_file(tmp_path):
    bad = write_archive(tmp_path / "a.tgz", tiny_reports(), {"ecgen-radiology/999.xml": b"<eCitation><uId"})
    with pytest.raises(DataError, match="ecgen-radiology/999.xml: not well-formed XML"):
        IUXrayReports(path=str(bad)).load()
    no_id = write_archive(tmp_path / "b.tgz", tiny_reports(), {"ecgen-radiology/998.xml": b"<eCitation/>"})
    with pytest.raises(DataError, match="998.xml: no <uId"):
        IUXrayReports(path=str(no_id)).load()
    (tmp_path / "c.tgz").write_bytes(b"not a tar file")
    with pytest.raises(DataError, match="cannot read the archive"):
        IUXrayReports(path=str(tmp_path / "c.tgz")).load()
    with pytest.raises(DataError, match="not found.*--no-deps torchxrayvision"):
        IUXrayReports(path=str(tmp_path / "missing.tgz")).load()
    with pytest.raises(ConfigError, match="dataset.labels"):
        IUXrayReports(labels="both")


def test_the_real_reports_follow_the_documented_protocol():
    if not default_archive().is_file():
        pytest.skip("torchxrayvision (the IU reports archive) is not installed")
    splits = IUXrayReports().load()
    assert len(splits.train) + len(splits.test) == 2447
    assert splits.class_names == ["normal", "Lung", "Cardiomegaly", "Calcified Granuloma", "Opacity",
                                  "Thoracic Vertebrae", "Calcinosis", "Spine", "Pulmonary Atelectasis", "Cicatrix"]
    counts = splits.train.labels.bincount()
    assert counts.max() == 954 and counts.min() == 36
    assert torch.equal(splits.train.labels.bincount() + splits.test.labels.bincount(),
                       torch.tensor([1363, 236, 149, 132, 132, 125, 115, 86, 57, 52]))
