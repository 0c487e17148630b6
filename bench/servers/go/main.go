// The benchmark's baseline: the original RHEL for Edge demo's counting file
// server (its main.go), unchanged in what it does per request, with the
// served folder, address and port as flags so the benchmark can run it on a
// free port. Each request is counted, the requested file's size is added
// from os.Stat, a line "count, cumulative MB, client, path" is logged, and
// Go's http.FileServer serves the file.
//
// The only other difference: the original updates count and total from
// concurrent handlers without a lock (a data race); here a mutex guards
// them, which is what a correct version of the original has to pay.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
)

const MB = 1000 * 1000

func main() {
	root := flag.String("root", ".", "folder to serve")
	address := flag.String("address", "", "address to listen on (all interfaces when empty)")
	port := flag.String("port", "8000", "port to listen on")
	logPath := flag.String("log", "", "append log lines to this file instead of stderr")
	flag.Parse()

	if *logPath != "" {
		logFile, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		log.SetOutput(logFile)
	}

	var mutex sync.Mutex
	var count int
	var total float64

	fs := http.FileServer(http.Dir(*root))
	logFileServer := func(w http.ResponseWriter, req *http.Request) {
		fileInfo, err := os.Stat(filepath.Join(*root, filepath.FromSlash(req.URL.Path)))

		mutex.Lock()
		count += 1
		if err == nil {
			total += float64(fileInfo.Size()) / MB
		}
		log.Printf("%5d  %7.3f MB  %s  %s\n", count, total, req.RemoteAddr, req.URL.Path)
		mutex.Unlock()

		fs.ServeHTTP(w, req)
	}

	http.HandleFunc("/", logFileServer)

	listen := *address + ":" + *port
	listener, err := net.Listen("tcp", listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Println("Serving on " + listen + "...")
	// Printed on stdout once listening, so the benchmark knows it is ready.
	os.Stdout.WriteString("serving " + *root + " on http://" + listen + "\n")
	log.Fatal(http.Serve(listener, nil))
}
