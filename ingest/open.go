package ingest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// OpenPaths calls fn with a Reader for every input named by paths, in
// order: a file (plain or gzip, detected by content), a directory (every
// regular file below it, recursively, in lexical order; names starting
// with "." are skipped) or "-" for opts.Stdin. An input that cannot be
// opened, or an error from fn, stops the walk and is returned.
func OpenPaths(paths []string, opts Options, fn func(name string, r *Reader) error) error {
	for _, p := range paths {
		if p == "-" {
			in := opts.Stdin
			if in == nil {
				in = os.Stdin
			}
			if err := fn("-", NewReader(in, "-", opts)); err != nil {
				return err
			}
			continue
		}
		files, err := expand(p)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := openOne(f, opts, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func expand(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk %s: %w", path, err)
		}
		name := d.Name()
		if path != p && len(name) > 0 && name[0] == '.' {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func openOne(path string, opts Options, fn func(string, *Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open input: %w", err)
	}
	defer f.Close()
	return fn(path, NewReader(f, path, opts))
}
