"""OCR's character error rate on the IU X-ray report pages, against the text printed on each page.

    python experiments/iu_xray/ocr_cer.py [--pages 50]

Reads the first `--pages` pages of the test split's stratified 300-page subset (the subset the pages study
uses) with the OCR that `encoder=ocr_text` runs, and prints the CER (Levenshtein distance / reference length,
whitespace collapsed) per page summary.
"""

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from neurocl.data import IUXrayPages
from neurocl.encoders.ocr_text import PageOCR, character_error_rate


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=50)
    args = parser.parse_args()
    test = IUXrayPages(test_size=300).load().test.take(torch.arange(args.pages))
    ocr, rates, start = PageOCR(), [], time.perf_counter()
    for page, record in tqdm(zip(test.data.load(), test.meta), total=args.pages, desc="OCR"):
        text = " ".join(line.text for line in ocr.lines(page))
        rates.append(character_error_rate(" ".join(text.split()), record["text"]))
    rates = np.array(rates)
    print(f"pages {len(rates)}  CER mean {rates.mean():.4f}  median {np.median(rates):.4f}  "
          f"max {rates.max():.4f}  pages with CER 0: {(rates == 0).mean():.2f}  "
          f"{(time.perf_counter() - start) / len(rates):.2f} s/page")


if __name__ == "__main__":
    main()
