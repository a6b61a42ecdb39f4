"""Readers for the raw recommender-data formats, validating every line.

Each reader parses a whole file (or 64 MiB chunks of it) with bulk numpy
operations and checks every line as it goes: a malformed line raises
`DataFormatError` naming the file, the 1-based line number and what was
expected there.  No line is skipped or dropped (a generic table's header line
names its columns; columns it does not name as user, item, rating, count or
timestamp are ignored, and the `notes` list says so).  Blank lines are allowed
only at the end of a file; CRLF line ends and a UTF-8 byte-order mark are
accepted.

Raw ids and dense indices:

* integer raw ids are numbered in increasing numeric order (dense index ``k`` is
  the k-th smallest raw id), so ``user_ids``/``item_ids`` are sorted;
* string raw ids are numbered in order of first appearance in the file(s);
* formats whose ids are already dense and 0-based (citeulike ``n i1 ... in``
  files, LDA-C, LightGCN lists read with ``ids="raw"``) keep dense index == raw
  id, and ids that never occur still get their slot up to the known count.

The modules, by format family (this package exports their readers):

* `parse`: chunks of lines, tokens and checked conversions every reader uses;
* `layout`: a table's delimiter, header and column roles;
* `tables`: MovieLens, MSD triplets and generic interaction tables;
* `netflix`: the Netflix Prize files;
* `lists`: one row a line (citeulike lists and splits, LDA-C, text, user lines);
* `merge`: merging logs into one id space and sniffing a file's format.

This package imports only numpy, scipy and the standard library.
"""

from recjax.data.readers.lists import (read_citeulike_splits, read_counted_lists, read_lda_c,
                                       read_text_lines, read_user_lines, read_vocabulary)
from recjax.data.readers.merge import merge_interactions, sniff_format
from recjax.data.readers.netflix import read_netflix
from recjax.data.readers.parse import open_file
from recjax.data.readers.tables import (ML_CSV_HEADER, VALUES, read_interactions, read_ml100k,
                                        read_ml_csv, read_ml_dat, read_movielens,
                                        read_msd_triplets)

__all__ = [
    "read_movielens", "read_ml100k", "read_ml_dat", "read_ml_csv", "read_netflix",
    "read_msd_triplets", "read_counted_lists", "read_lda_c", "read_text_lines",
    "read_vocabulary", "read_citeulike_splits", "read_interactions", "read_user_lines",
    "merge_interactions", "sniff_format", "open_file", "ML_CSV_HEADER", "VALUES",
]
