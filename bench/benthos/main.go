// Command benthos-bench runs Benthos 4.60's parse+extract+filter pipeline
// (config.yaml: file input line by line, one bloblang mapping) over one
// file, the side of `make bench-benthos` that `auditwatch normalize` and
// `replay` are compared with. Each output message is serialised to a JSON
// line on stdout through a 256 KiB buffer (what normalize does); a summary
// goes to stderr:
//
//	benthos: N events, M bytes, E errors
//
// It is its own module (bench/benthos/go.mod) so the auditwatch module
// neither builds nor downloads Benthos.
package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"

	"gopkg.in/yaml.v3"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
)

//go:embed config.yaml
var defaultConfig []byte

func main() {
	cfgPath := flag.String("config", "", "Benthos config with input and pipeline sections (default: the embedded config.yaml)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	cmp := flag.Bool("compare", false, "compare two files of events, normalize's and Benthos's: benthos-bench -compare A B")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: benthos-bench [-config F] [-cpuprofile P] FILE")
		fmt.Fprintln(os.Stderr, "       benthos-bench -compare NORMALIZED.jsonl BENTHOS.jsonl")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *cmp {
		if flag.NArg() != 2 {
			flag.Usage()
			os.Exit(2)
		}
		n, err := compare(flag.Arg(0), flag.Arg(1), os.Stdout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "compare: %v\n", err)
			os.Exit(2)
		}
		if n > 0 {
			os.Exit(1)
		}
		return
	}
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	cfg := defaultConfig
	if *cfgPath != "" {
		b, err := os.ReadFile(*cfgPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benthos: %v\n", err)
			os.Exit(2)
		}
		cfg = b
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "benthos: %v\n", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := run(ctx, cfg, flag.Arg(0), os.Stdout)
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintf(os.Stderr, "benthos: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "benthos: %d events, %d bytes, %d errors\n", st.events, st.bytes, st.errors)
}

type stats struct{ events, bytes, errors int64 }

// run builds the stream from cfg's input and pipeline sections, with
// BENCH_FILE set to path, and runs it until the input ends.
func run(ctx context.Context, cfg []byte, path string, w io.Writer) (stats, error) {
	var doc struct {
		Input    yaml.Node `yaml:"input"`
		Pipeline struct {
			Threads    int         `yaml:"threads"`
			Processors []yaml.Node `yaml:"processors"`
		} `yaml:"pipeline"`
	}
	if err := yaml.Unmarshal(cfg, &doc); err != nil {
		return stats{}, fmt.Errorf("config: %w", err)
	}
	if doc.Input.Kind == 0 {
		return stats{}, errors.New("config: no input section")
	}
	sb := service.NewStreamBuilder()
	sb.SetEnvVarLookupFunc(func(k string) (string, bool) {
		if k == "BENCH_FILE" {
			return path, true
		}
		return os.LookupEnv(k)
	})
	if err := sb.SetLoggerYAML("level: warn"); err != nil {
		return stats{}, err
	}
	in, err := yaml.Marshal(&doc.Input)
	if err != nil {
		return stats{}, err
	}
	if err := sb.AddInputYAML(string(in)); err != nil {
		return stats{}, fmt.Errorf("input: %w", err)
	}
	for i := range doc.Pipeline.Processors {
		p, err := yaml.Marshal(&doc.Pipeline.Processors[i])
		if err != nil {
			return stats{}, err
		}
		if err := sb.AddProcessorYAML(string(p)); err != nil {
			return stats{}, fmt.Errorf("processor %d: %w", i, err)
		}
	}
	if doc.Pipeline.Threads != 0 {
		sb.SetThreads(doc.Pipeline.Threads)
	}

	// the output: each message's bytes (Benthos serialises the mapping's
	// structured result to JSON here) as one line; a message the mapping
	// failed on (a line that is not JSON) is counted, not written:
	// normalize rejects it
	var (
		mu sync.Mutex
		st stats
	)
	out := bufio.NewWriterSize(w, 256<<10)
	err = sb.AddBatchConsumerFunc(func(_ context.Context, b service.MessageBatch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range b {
			if m.GetError() != nil {
				st.errors++
				continue
			}
			data, err := m.AsBytes()
			if err != nil {
				return err
			}
			out.Write(data)
			if err := out.WriteByte('\n'); err != nil {
				return err
			}
			st.events++
			st.bytes += int64(len(data)) + 1
		}
		return nil
	})
	if err != nil {
		return stats{}, err
	}
	stream, err := sb.Build()
	if err != nil {
		return stats{}, err
	}
	if err := stream.Run(ctx); err != nil {
		return st, err
	}
	if err := out.Flush(); err != nil {
		return st, fmt.Errorf("write output: %w", err)
	}
	return st, nil
}
