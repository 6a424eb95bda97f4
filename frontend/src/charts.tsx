// Charts: Chart.js with only the parts the dashboard draws registered, to keep the bundle small.
import {
  ArcElement, CategoryScale, Chart, DoughnutController, Filler, Legend, LinearScale, LineController,
  LineElement, PointElement, Tooltip,
} from 'chart.js';
import { useEffect, useRef } from 'preact/hooks';

Chart.register(ArcElement, CategoryScale, DoughnutController, Filler, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip);

const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563', '#65a30d', '#9333ea'];

type Props = { id: string; label: string; type: 'line' | 'doughnut'; labels: string[]; series: { label: string; data: number[] }[] };

/** One chart; redrawn in place when its data changes. `label` describes it to screen readers. */
export function ChartView({ id, label, type, labels, series }: Props) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  useEffect(() => {
    const datasets = series.map((s, i) =>
      type === 'line'
        ? { label: s.label, data: s.data, borderColor: PALETTE[i], backgroundColor: `${PALETTE[i]}33`, fill: true, tension: 0.25 }
        : { label: s.label, data: s.data, backgroundColor: labels.map((_, j) => PALETTE[j % PALETTE.length]) },
    );
    if (chart.current) {
      chart.current.data.labels = labels;
      chart.current.data.datasets = datasets as any;
      chart.current.update();
      return;
    }
    chart.current = new Chart(canvas.current!, {
      type,
      data: { labels, datasets: datasets as any },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { position: 'bottom' } },
        ...(type === 'line' ? { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } : {}),
      },
    });
  }, [JSON.stringify(labels), JSON.stringify(series)]);
  useEffect(() => () => chart.current?.destroy(), []);
  return (
    <div class="chart">
      <canvas id={id} ref={canvas} role="img" aria-label={label} />
    </div>
  );
}
