package menu

import (
	"bufio"
	"io"
	"sync"
)

// maxLine bounds one typed line.
const maxLine = 256

// Lines reads lines from each of ins and sends them on the returned
// channel until stop is called; stop closes ins (which ends their
// reads), waits for the readers and then closes the channel. A reader
// that fails just stops.
func Lines(ins ...io.ReadCloser) (lines <-chan string, stop func()) {
	ch := make(chan string)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(in)
			sc.Buffer(make([]byte, maxLine), maxLine)
			for sc.Scan() {
				select {
				case ch <- sc.Text():
				case <-done:
					return
				}
			}
		}()
	}
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			close(done)
			for _, in := range ins {
				in.Close()
			}
			wg.Wait()
			close(ch)
		})
	}
}
