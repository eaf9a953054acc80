// Package cliflag parses command lines whose flags and positional
// arguments may come in any order, as in "repo add DIR FILE -version 1".
package cliflag

import (
	"flag"
	"slices"
)

// Parse parses args into fs, taking flags wherever they stand before a
// "--". Afterwards fs.Args, fs.NArg and fs.Arg return the positional
// arguments in order. Whether a flag takes a value is decided by fs
// itself, so boolean flags never swallow the next argument.
func Parse(fs *flag.FlagSet, args []string) error {
	head, tail := args, []string(nil)
	if i := slices.Index(args, "--"); i >= 0 {
		head, tail = args[:i], args[i+1:]
	}
	var positional []string
	for {
		if err := fs.Parse(head); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		head = fs.Args()[1:]
	}
	positional = append(positional, tail...)
	return fs.Parse(append([]string{"--"}, positional...))
}
