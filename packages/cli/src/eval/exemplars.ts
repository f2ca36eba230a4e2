/**
 * Built-in few-shot exemplars, used when no --fewshot-data file is given: records of the public datasets (GSM8K:
 * the first eight of the train split; MATH: the four problems of Minerva's 4-shot prompt, from the MATH train set;
 * MBPP: tasks 2, 3 and 4 of the prompt split), typed in for this project and compared with published copies.
 * Pass --fewshot-data with your copy of the split to use its exact text.
 */
import type { Gsm8kProblem, MathProblem, MbppProblem } from './datasets.js';

type Gsm8kShot = Pick<Gsm8kProblem, 'question' | 'answer'>;
type MathShot = Pick<MathProblem, 'problem' | 'solution'> & { answer: string };
type MbppShot = Pick<MbppProblem, 'taskId' | 'text' | 'code' | 'tests'>;

/** The first eight problems of the GSM8K train split, with their reference solutions (calculator annotations kept). */
export const GSM8K_SHOTS: readonly Gsm8kShot[] = [
  {
    question: 'Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?',
    answer: 'Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72',
  },
  {
    question: 'Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?',
    answer: 'Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10',
  },
  {
    question: 'Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her parents. How much more money does Betty need to buy the wallet?',
    answer: 'In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\nBetty\'s grandparents gave her 15 * 2 = $<<15*2=30>>30.\nThis means, Betty needs 100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5 more.\n#### 5',
  },
  {
    question: 'Julie is reading a 120-page book. Yesterday, she was able to read 12 pages and today, she read twice as many pages as yesterday. If she wants to read half of the remaining pages tomorrow, how many pages should she read?',
    answer: 'Maila read 12 x 2 = <<12*2=24>>24 pages today.\nSo she was able to read a total of 12 + 24 = <<12+24=36>>36 pages since yesterday.\nThere are 120 - 36 = <<120-36=84>>84 pages left to be read.\nSince she wants to read half of the remaining pages tomorrow, then she should read 84/2 = <<84/2=42>>42 pages.\n#### 42',
  },
  {
    question: 'James writes a 3-page letter to 2 different friends twice a week.  How many pages does he write a year?',
    answer: 'He writes each friend 3*2=<<3*2=6>>6 pages a week\nSo he writes 6*2=<<6*2=12>>12 pages every week\nThat means he writes 12*52=<<12*52=624>>624 pages a year\n#### 624',
  },
  {
    question: 'Mark has a garden with flowers. He planted plants of three different colors in it. Ten of them are yellow, and there are 80% more of those in purple. There are only 25% as many green flowers as there are yellow and purple flowers. How many flowers does Mark have in his garden?',
    answer: 'There are 80/100 * 10 = <<80/100*10=8>>8 more purple flowers than yellow flowers.\nSo in Mark\'s garden, there are 10 + 8 = <<10+8=18>>18 purple flowers.\nPurple and yellow flowers sum up to 10 + 18 = <<10+18=28>>28 flowers.\nThat means in Mark\'s garden there are 25/100 * 28 = <<25/100*28=7>>7 green flowers.\nSo in total Mark has 28 + 7 = <<28+7=35>>35 plants in his garden.\n#### 35',
  },
  {
    question: 'Albert is wondering how much pizza he can eat in one day. He buys 2 large pizzas and 2 small pizzas. A large pizza has 16 slices and a small pizza has 8 slices. If he eats it all, how many pieces does he eat that day?',
    answer: 'He eats 32 from the largest pizzas because 2 x 16 = <<2*16=32>>32\nHe eats 16 from the small pizza because 2 x 8 = <<2*8=16>>16\nHe eats 48 pieces because 32 + 16 = <<32+16=48>>48\n#### 48',
  },
  {
    question: 'Ken created a care package to send to his brother, who was away at boarding school.  Ken placed a box on a scale, and then he poured into the box enough jelly beans to bring the weight to 2 pounds.  Then, he added enough brownies to cause the weight to triple.  Next, he added another 2 pounds of jelly beans.  And finally, he added enough gummy worms to double the weight once again.  What was the final weight of the box of goodies, in pounds?',
    answer: 'To the initial 2 pounds of jelly beans, he added enough brownies to cause the weight to triple, bringing the weight to 2*3=<<2*3=6>>6 pounds.\nNext, he added another 2 pounds of jelly beans, bringing the weight to 6+2=<<6+2=8>>8 pounds.\nAnd finally, he added enough gummy worms to double the weight once again, to a final weight of 8*2=<<8*2=16>>16 pounds.\n#### 16',
  },
];

/** Minerva's 4-shot MATH prompt: solutions end with the sentence the extraction looks for. */
export const MATH_SHOTS: readonly MathShot[] = [
  {
    problem: 'Find the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}',
    solution: 'The expressions inside each square root must be non-negative. Therefore, $x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. Therefore, the domain of the expression is $\\boxed{[2,5)}$.',
    answer: '[2,5)',
  },
  {
    problem: 'If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find $\\det (\\mathbf{A} \\mathbf{B}).$',
    solution: 'We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) = (2)(12) = \\boxed{24}.$',
    answer: '24',
  },
  {
    problem: 'Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times must Terrell lift them in order to lift the same total weight?',
    solution: 'If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$:\n\\begin{align*}\n30n&=480\\\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}',
    answer: '16',
  },
  {
    problem: 'If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\\\n6y-9x &=b.\n\\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero,\nfind $\\frac{a}{b},$ assuming $b$ is nonzero.',
    solution: 'If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n$$6y-9x=-\\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have\n\n$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$$',
    answer: '-\\frac{2}{3}',
  },
];

/** MBPP tasks 2, 3 and 4: the prompt examples of the original MBPP paper's 3-shot setup. */
export const MBPP_SHOTS: readonly MbppShot[] = [
  {
    taskId: 2,
    text: 'Write a function to find the similar elements from the given two tuple lists.',
    code: 'def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ',
    tests: [
      'assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)',
      'assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)',
      'assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)',
    ],
  },
  {
    taskId: 3,
    text: 'Write a python function to identify non-prime numbers.',
    code: 'import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):\r\n        if n % i == 0:\r\n            result = True\r\n    return result',
    tests: ['assert is_not_prime(2) == False', 'assert is_not_prime(10) == True', 'assert is_not_prime(35) == True'],
  },
  {
    taskId: 4,
    text: 'Write a function to find the largest integers from a given list of numbers using heap queue algorithm.',
    code: 'import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n  return largest_nums',
    tests: [
      'assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ',
      'assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ',
      'assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]',
    ],
  },
];

export type { Gsm8kShot, MathShot, MbppShot };
